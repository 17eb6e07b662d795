from __future__ import annotations

from .models import Balance, Payment


def balances_get(*, tenant_id: int) -> dict[str, Balance]:
    from .services import balances_open

    return {b.kind: b for b in balances_open(tenant_id=tenant_id)}


def usage_total_micros(*, tenant_id: int, kind: str, since=None, until=None) -> int:
    """What usage took from one balance, optionally within [since, until)."""
    from django.db.models import Sum

    from .models import LedgerEntry

    entries = LedgerEntry.objects.filter(balance__tenant_id=tenant_id, balance__kind=kind, kind=LedgerEntry.Kind.USAGE)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return -(entries.aggregate(total=Sum("amount_micros"))["total"] or 0)


def payments_list(*, tenant_id: int, limit: int = 50) -> list:
    """A tenant's payments, newest first: the receipts the portal lists."""
    return list(Payment.objects.filter(tenant_id=tenant_id).order_by("-id")[:limit])


def payment_get(*, tenant_id: int, session_id: str):
    """One of the tenant's payments by its Checkout Session id; None if it is not theirs."""
    if not session_id:
        return None
    return Payment.objects.filter(tenant_id=tenant_id, session_id=session_id).first()
