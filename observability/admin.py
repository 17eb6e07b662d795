"""The operator's view of what happened: the audit log (read-only, filterable), request logs,
and the live page of routing decisions. Django's own users and groups are re-registered with
the audit mixin, so changes to operators are recorded like everything else."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from .admin_audit import AuditedAdmin
from .models import AuditRecord, RequestLog
from .ws import LIVE_PATH


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    """Append-only: nobody adds, changes or deletes records here (the database refuses too)."""

    list_display = ("created_at", "actor", "action", "target_type", "target_id", "target_repr")
    list_filter = ("action", "target_type", "actor", "created_at")
    search_fields = ("actor", "action", "target_type", "target_id", "target_repr")
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "actor", "action", "target_type", "target_id", "target_repr", "before", "after")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """A browser over every request: filters, search and a drill-down by date. Read-only: logs
    are what happened. It also hosts the live page of routing decisions."""

    list_display = ("created_at", "request_id", "tenant_id", "key_id", "model", "channel_name", "status", "prompt_tokens",
                    "completion_tokens", "cost_micros", "currency", "latency_ms", "is_stream")
    list_filter = ("status", "endpoint", "balance_kind", "is_stream", "is_usage_estimated", "model")
    search_fields = ("request_id", "model", "channel_name", "upstream_model", "error_message")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False  # a count over millions of rows on every page is too slow

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        live = path("live/", self.admin_site.admin_view(self.live_view), name="observability_live")
        return [live, *super().get_urls()]

    def live_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Routing decisions, live", "opts": self.model._meta, "socket_path": "/" + LIVE_PATH,
        }
        return TemplateResponse(request, "admin/observability/live.html", context)


# Operators themselves: the same audit as every other model.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    pass
