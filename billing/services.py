"""Billing services. Balances change only here, each change one ledger entry in one
transaction, keyed for idempotency."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from .models import Balance, BalanceKind

DEFAULT_CURRENCY = {BalanceKind.CREDIT: "USD", BalanceKind.WALLET: "CNY"}


@transaction.atomic
def balances_open(*, tenant_id: int) -> list[Balance]:
    return [
        Balance.objects.get_or_create(tenant_id=tenant_id, kind=kind, defaults={"currency": DEFAULT_CURRENCY[kind]})[0]
        for kind in (BalanceKind.CREDIT, BalanceKind.WALLET)
    ]
