from django.contrib import admin

from observability.admin_audit import AuditedAdmin

from .models import ApiKey, Membership, Tenant
from .services import api_key_revoke, tenant_set_status


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    list_display = ("name", "group", "status", "timezone", "created_at")
    list_filter = ("group", "status")
    search_fields = ("name",)
    actions = ("suspend", "reactivate")

    @admin.action(description="Suspend (its keys stop working at once)")
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.Status.ACTIVE)


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
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

    @admin.action(description="Revoke (takes effect at once)")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
