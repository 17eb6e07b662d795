"""The portal's dashboard, usage and request-log pages, always within the visitor's tenant."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta, timezone

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone as djtz

from accounts.apiauth import MAX_ID
from accounts.portal import portal_view
from accounts.selectors import api_key_names
from billing.money import format_micros
from billing.selectors import balances_get, usage_total_micros

from .charts import spend_chart_svg
from .models import RequestLog
from .selectors import attempts_public, request_log_get, request_log_models, request_logs_page, usage_rows


def _day_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        # in UTC, as the database compares it: 0001-01-01T00:00+01:00 is before the calendar
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        return None


def _parse_int(text: str, *, high: int) -> int | None:
    """A filter's whole number from 0 to `high`, else None. Not str.isdigit() alone: it is true
    for '²' (int() refuses it) and '٣' (int() reads 3); and past BIGINT the database overflows."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    number = int(text)
    return number if number <= high else None


@portal_view(permission="view")
def dashboard(request):
    tenant = request.tenant
    now = djtz.now()
    today = _day_start(now.date())
    month = today.replace(day=1)
    balances = []
    for kind, balance in balances_get(tenant_id=tenant.pk).items():
        balances.append(
            {
                "kind": kind,
                "label": "Credit" if kind == "credit" else "Wallet",
                "currency": balance.currency,
                "amount": format_micros(balance.amount_micros),
                "held": format_micros(balance.held_micros),
                "available": format_micros(balance.amount_micros - balance.held_micros),
                "today": format_micros(usage_total_micros(tenant_id=tenant.pk, kind=kind, since=today)),
                "month": format_micros(usage_total_micros(tenant_id=tenant.pk, kind=kind, since=month)),
            }
        )
    since = today - timedelta(days=13)
    rows = usage_rows(tenant_id=tenant.pk, since=since)
    return render(
        request,
        "portal/dashboard.html",
        {"balances": balances, "chart": spend_chart_svg(rows, first_day=since.date(), days=14)},
    )


def _usage_filters(request) -> tuple[datetime, datetime | None]:
    days_n = _parse_int(request.GET.get("days", ""), high=366) or 30  # 0 too: at least today
    return _day_start(djtz.now().date()) - timedelta(days=days_n - 1), None


@portal_view(permission="usage")
def usage(request):
    since, until = _usage_filters(request)
    rows = usage_rows(tenant_id=request.tenant.pk, since=since, until=until)
    names = api_key_names(tenant_id=request.tenant.pk)
    for row in rows:
        row["key"] = names.get(row["key_id"], "—")
        row["cost"] = format_micros(row["cost_micros"] or 0)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="tokenhub-usage.csv"'
        writer = csv.writer(response)
        writer.writerow(["day", "model", "key", "balance", "currency", "requests", "prompt_tokens", "completion_tokens", "cost"])
        for row in rows:
            writer.writerow(
                [row["day"], row["model"], row["key"], row["balance_kind"], row["currency"], row["requests"],
                 row["prompt_tokens"], row["completion_tokens"], row["cost"]]
            )
        return response
    return render(request, "portal/usage.html", {"rows": rows, "days": (djtz.now().date() - since.date()).days + 1})


@portal_view(permission="usage")
def logs(request):
    get = request.GET
    key_id = _parse_int(get.get("key", ""), high=MAX_ID)
    status = _parse_int(get.get("status", ""), high=999)
    page = request_logs_page(
        tenant_id=request.tenant.pk,
        page=get.get("page", 1),
        per_page=settings.PORTAL_PAGE_SIZE,
        key_id=key_id,
        model=get.get("model", ""),
        status=status,
        since=_parse_time(get.get("since", "")),
        until=_parse_time(get.get("until", "")),
    )
    names = api_key_names(tenant_id=request.tenant.pk)
    entries = [_log_view(log, names) for log in page.object_list]
    query = get.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/logs.html",
        {
            "page": page, "entries": entries, "keys": sorted(names.items(), key=lambda kv: kv[1]),
            "models": request_log_models(tenant_id=request.tenant.pk), "filters": get, "query": query.urlencode(),
        },
    )


def _log_view(log: RequestLog, names: dict[int, str]) -> dict:
    return {
        "id": log.pk,
        "request_id": log.request_id,
        "created_at": log.created_at,
        "key": names.get(log.key_id, "—"),
        "model": log.model,
        "endpoint": log.endpoint,
        "status": log.status,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "cached_tokens": log.cached_tokens,
        "is_usage_estimated": log.is_usage_estimated,
        "cost": format_micros(log.cost_micros),
        "balance": {"credit": "Credit", "wallet": "Wallet"}.get(log.balance_kind, "—"),
        "currency": log.currency,
        "latency_ms": log.latency_ms,
        "ttft_ms": log.ttft_ms,
        "is_stream": log.is_stream,
        "error_message": log.error_message,
        "attempts": attempts_public(log),
    }


@portal_view(permission="usage")
def log_detail(request, log_id: int):
    try:
        log = request_log_get(tenant_id=request.tenant.pk, log_id=log_id)
    except RequestLog.DoesNotExist:
        raise Http404("no such request") from None
    return render(request, "portal/log_detail.html", {"entry": _log_view(log, api_key_names(tenant_id=request.tenant.pk))})
