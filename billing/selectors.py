from __future__ import annotations

from django.db.models import F, Sum

from .models import Balance, Group, KeySpend, Payment, Price

DEFAULT_GROUP = "default"  # every tenant created without a group is in it; it always exists


def balances_get(*, tenant_id: int) -> dict[str, Balance]:
    from .services import balances_open

    return {b.kind: b for b in balances_open(tenant_id=tenant_id)}


def balance_available_any(*, tenant_id: int) -> bool:
    """Whether any of the tenant's balances has something left that no hold reserves: a cheap
    lower bound (one indexed read, nothing locked) checked before expensive work on a request."""
    return Balance.objects.filter(tenant_id=tenant_id, amount_micros__gt=F("held_micros")).exists()


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


def ledger_entries(*, tenant_id: int, limit: int | None = None) -> list:
    """Every movement of a tenant's balances, newest first, with its balance's kind and currency."""
    from .models import LedgerEntry

    entries = LedgerEntry.objects.filter(balance__tenant_id=tenant_id).select_related("balance").order_by("-id")
    return list(entries[:limit] if limit else entries)
def group_exists(*, name: str) -> bool:
    """Whether tenants may be put in this price group; `default` always exists."""
    return name == DEFAULT_GROUP or Group.objects.filter(name=name).exists()


def groups_all() -> list[Group]:
    return list(Group.objects.order_by("name"))


def prices_all() -> list[Price]:
    return list(Price.objects.order_by("model"))


def price_get(*, model: str) -> Price | None:
    """A model's list price, or None."""
    return Price.objects.filter(model=model).first()
def payments_list(*, tenant_id: int, limit: int = 50) -> list:
    """A tenant's payments, newest first: the receipts the portal lists."""
    return list(Payment.objects.filter(tenant_id=tenant_id).order_by("-id")[:limit])


def payment_get(*, tenant_id: int, session_id: str):
    """One of the tenant's payments by its Checkout Session id; None if it is not theirs."""
    if not session_id:
        return None
    return Payment.objects.filter(tenant_id=tenant_id, session_id=session_id).first()


def key_spent_micros(*, key_id: int) -> int:
    """What a key has been charged in all, in its tenant's Credit-currency micros (the sum of its
    months; kept for keys with a spending cap)."""
    total = KeySpend.objects.filter(key_id=key_id, period=KeySpend.Period.MONTH).aggregate(total=Sum("spent_micros"))
    return int(total["total"] or 0)
