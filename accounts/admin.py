from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin, messages

from observability.admin_audit import AuditedAdmin

from .models import ApiKey, Membership, OperatorToken, Tenant
from .services import (
    InvalidInput,
    api_key_create,
    api_key_revoke,
    operator_token_revoke,
    tenant_name_check,
    tenant_set_status,
    timezone_check,
)


class TenantForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = "__all__"

    def clean_name(self):
        try:
            return tenant_name_check(name=self.cleaned_data["name"], tenant=self.instance if self.instance.pk else None)
        except InvalidInput as error:
            raise forms.ValidationError(str(error)) from None

    def clean_timezone(self):
        try:
            return timezone_check(name=self.cleaned_data["timezone"])
        except InvalidInput as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    form = TenantForm
    list_display = ("name", "group", "status", "timezone", "created_at")
    list_filter = ("group", "status")
    search_fields = ("name",)
    actions = ("suspend", "reactivate")

    @admin.action(description="Suspend (its keys stop working at once)", permissions=["change"])
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)

    @admin.action(description="Reactivate", permissions=["change"])
    def reactivate(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = (
            "tenant", "name", "allowed_models", "allowed_ips", "rpm", "tpm", "daily_cap_micros", "monthly_cap_micros", "expires_at", "mode",
        )


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    """Keys are made here, by their owners or by `create_api_key`, always through
    accounts.services.api_key_create; the secret is shown once (a message) and never stored."""

    list_display = (
        "prefix", "name", "tenant", "status", "rpm", "tpm", "daily_cap_micros", "monthly_cap_micros", "expires_at", "last_used_at",
    )
    list_filter = ("status",)
    search_fields = ("prefix", "name", "tenant__name")
    readonly_fields = ("key_hash", "prefix", "tenant", "created_at", "last_used_at",
                       "previous_key_hash", "previous_expires_at", "created_by")  # rotation: the portal's services
    actions = ("revoke",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ApiKeyAddForm.Meta.fields
        return super().get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)  # the save moves the configuration version
            return
        data = form.cleaned_data
        key, secret = api_key_create(
            tenant=data["tenant"], name=data["name"], allowed_models=data["allowed_models"] or [], allowed_ips=data["allowed_ips"] or [],
            rpm=data["rpm"], tpm=data["tpm"], daily_cap_micros=data["daily_cap_micros"], monthly_cap_micros=data["monthly_cap_micros"],
            expires_at=data["expires_at"], mode=data["mode"], created_by=request.user,
        )
        obj.pk, obj.key_hash, obj.prefix, obj.created_at = key.pk, key.key_hash, key.prefix, key.created_at
        obj._state.adding, obj._state.db = False, key._state.db
        self.message_user(request, f"The new key is {secret} — copy it now: it is shown only this once.", messages.WARNING)

    @admin.action(description="Revoke (takes effect at once)", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)


@admin.register(OperatorToken)
class OperatorTokenAdmin(AuditedAdmin):
    """Tokens are made by `create_operator_token` (the secret is printed once); here they are
    listed and revoked."""

    list_display = ("prefix", "name", "is_read_only", "created_at", "revoked_at")
    list_filter = ("is_read_only",)
    search_fields = ("name", "prefix")
    readonly_fields = ("name", "prefix", "is_read_only", "created_at", "revoked_at", "last_used_at")
    exclude = ("token_hash",)
    actions = ("revoke",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke (refused at once)", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset:
            operator_token_revoke(token=token)
# django-axes' login records (AXES_ENABLE_ADMIN is off so that these are the registered ones):
# its clean-up action declares no permission, which would offer it to view-only staff.
@admin.register(AccessAttempt)
class LoginAttemptAdmin(AccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset):
        return super().cleanup_expired_attempts(request, queryset)


admin.site.register(AccessLog, AccessLogAdmin)
admin.site.register(AccessFailureLog, AccessFailureLogAdmin)
