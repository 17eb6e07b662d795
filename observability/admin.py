from django.contrib import admin

from .models import RequestLog


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """A browser over every request: filters, search and a drill-down by date. Read-only: logs
    are what happened."""

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
