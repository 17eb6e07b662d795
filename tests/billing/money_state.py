"""What the money of one tenant's credit balance looks like, for comparing two ways of making the
same money steps (sync against async calls, the PostgreSQL functions against portable SQL): the
balance, its holds, its ledger entries after the opening credit, and one key's spend, with each
path's own key prefix taken off."""

from __future__ import annotations

from billing.models import Balance, Hold, KeySpend, LedgerEntry


def money_state(tenant, key_id: int, prefix: str) -> dict:
    balance = Balance.objects.get(tenant=tenant, kind="credit")
    return {
        "balance": (balance.amount_micros, balance.held_micros),
        "holds": sorted(
            (
                h.hold_key.removeprefix(prefix),
                h.request_id.removeprefix(prefix),
                h.key_id == key_id,
                h.status,
                h.amount_micros,
                h.floor_micros,
                h.cap_amount_micros,
                h.charged_micros,
                h.cap_charged_micros,
                h.is_reconciled,
                h.day,
                h.month,
                h.ended_at is None,
            )
            for h in Hold.objects.filter(balance=balance)
        ),
        "entries": [
            (
                e.kind,
                e.amount_micros,
                e.balance_after_micros,
                e.idempotency_key.replace(prefix, ""),
                e.request_id.removeprefix(prefix),
                e.note,
            )
            for e in LedgerEntry.objects.filter(balance=balance).order_by("id")
        ][1:],  # after the opening credit, whose key names the tenant
        "spend": sorted(KeySpend.objects.filter(key_id=key_id).values_list("period", "starts_on", "spent_micros", "held_micros")),
    }
