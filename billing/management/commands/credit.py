import uuid

from accounts.selectors import tenant_get
from billing.models import LedgerEntry
from billing.money import format_micros, parse_micros
from billing.services import balance_credit
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Add (or with a negative amount, take away) money on a tenant's Credit or Wallet, as a ledger entry."

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")
        parser.add_argument("--balance", required=True, choices=["credit", "wallet"])
        parser.add_argument("--amount", required=True, help="in the balance's currency units (2.5 = 2,500,000 micros)")
        parser.add_argument("--note", default="")
        parser.add_argument("--idempotency-key", help="apply once: the same key again changes nothing")

    def run(self, *, tenant, balance, amount, note, idempotency_key, **_):
        owner = tenant_get(ref=tenant)
        amount_micros = parse_micros(amount, what="amount")
        entry = balance_credit(
            tenant_id=owner.pk, kind=balance, amount_micros=amount_micros,
            idempotency_key=f"admin:{idempotency_key or uuid.uuid4().hex}",
            entry_kind=LedgerEntry.Kind.ADJUSTMENT, note=note or "operator adjustment",
        )
        currency = entry.balance.currency
        result = {
            "id": entry.pk,
            "tenant": owner.name,
            "balance": balance,
            "currency": currency,
            "amount_micros": entry.amount_micros,
            "balance_after_micros": entry.balance_after_micros,
        }
        return result, f"{owner.name} {balance}: {format_micros(entry.amount_micros)} {currency}, now {format_micros(entry.balance_after_micros)} {currency}"
