from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin

from .models import ApiKey, Membership, Tenant
from .services import api_key_revoke, tenant_set_status


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made by their owners (or `create_api_key`); the secret is never stored."""

    list_display = ("prefix", "name", "tenant", "status", "rpm", "tpm", "daily_cap_micros", "monthly_cap_micros", "expires_at", "last_used_at")
    list_filter = ("status",)
    search_fields = ("prefix", "name", "tenant__name")
    readonly_fields = ("key_hash", "prefix", "tenant", "created_at", "last_used_at")
    actions = ("revoke",)

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from . import keycache

        keycache.invalidate(key_hash=obj.key_hash)

    @admin.action(description="Revoke (takes effect at once)", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)


# django-axes' login records (AXES_ENABLE_ADMIN is off so that these are the registered ones):
# its clean-up action declares no permission, which would offer it to view-only staff.
@admin.register(AccessAttempt)
class LoginAttemptAdmin(AccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request, queryset):
        return super().cleanup_expired_attempts(request, queryset)


admin.site.register(AccessLog, AccessLogAdmin)
admin.site.register(AccessFailureLog, AccessFailureLogAdmin)
