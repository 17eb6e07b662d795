from billing.money import format_micros, parse_micros
from billing.services import redemption_batch_create
from common.cli import JsonCommand, datetime_arg


class Command(JsonCommand):
    help = "Generate a batch of redemption codes (printed this once; only their hashes are kept)."

    def add_args(self, parser) -> None:
        parser.add_argument("--balance", required=True, choices=["credit", "wallet"])
        parser.add_argument("--amount", required=True, help="per code, in the balance's currency units")
        parser.add_argument("--count", required=True, type=int)
        parser.add_argument("--expires", type=datetime_arg, help="ISO date or time, UTC unless given (default: never)")
        parser.add_argument("--note", default="")

    def run(self, *, balance, amount, count, expires, note, **_):
        batch, codes = redemption_batch_create(
            kind=balance, amount_micros=parse_micros(amount, what="amount"), count=count,
            expires_at=expires, note=note,
        )
        result = {
            "id": batch.pk,
            "codes": codes,
            "balance": batch.balance_kind,
            "currency": batch.currency,
            "amount_micros": batch.amount_micros,
            "count": batch.count,
            "expires_at": batch.expires_at.isoformat() if batch.expires_at else None,
        }
        return result, "\n".join(codes)
