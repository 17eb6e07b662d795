"""Management API: a tenant's request logs, filtered and paginated (mounted by relay.api)."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Path, Query, Router, Schema

from accounts import roles
from accounts.apiauth import MAX_ID, tenant_for, with_errors

from .selectors import request_logs_for

router = Router(tags=["observability"])


class LogOut(Schema):
    id: int
    request_id: str
    key_id: int | None
    endpoint: str
    model: str
    status: int
    error_class: str
    error_message: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    is_usage_estimated: bool
    cost_micros: int
    balance_kind: str
    currency: str
    latency_ms: int
    ttft_ms: int | None
    is_stream: bool
    finish_reason: str
    attempts: int = Field(description="how many upstream attempts the request took")
    created_at: datetime

    @staticmethod
    def resolve_attempts(obj):
        return len(obj.attempts or ())


class LogPage(Schema):
    items: list[LogOut]
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null at the end")


@router.get("/tenants/{tenant_id}/logs", response=with_errors({200: LogPage}), summary="Request logs, newest first")
def logs_list(
    request,
    tenant_id: int = Path(..., ge=1, le=MAX_ID),
    model: str | None = Query(None, max_length=200),
    status: int | None = Query(None, ge=100, le=599),
    key_id: int | None = Query(None, ge=1, le=MAX_ID),
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(50, ge=1, le=200),
):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.USAGE_READ)
    logs = request_logs_for(tenant_id=tenant.pk, model=model, status=status, key_id=key_id, since=since, until=until, before_id=before_id)
    items = list(logs[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_before_id": items[-1].pk if more else None}
