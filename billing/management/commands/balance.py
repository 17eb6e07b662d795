from accounts.selectors import tenant_get
from billing.money import format_micros
from billing.selectors import balances_get
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Show a tenant's Credit and Wallet balances."
    atomic = False
    is_mutating = False

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")

    def run(self, *, tenant, **_):
        owner = tenant_get(ref=tenant)
        balances = balances_get(tenant_id=owner.pk)
        # exactly the shape ARCHITECTURE.md fixes, with what open holds reserve
        result = {
            kind: {"currency": b.currency, "amount_micros": b.amount_micros, "held_micros": b.held_micros}
            for kind, b in balances.items()
        }
        line = "  ".join(
            f"{kind}: {format_micros(b.amount_micros)} {b.currency} ({format_micros(b.held_micros)} held)" for kind, b in balances.items()
        )
        return result, f"{owner.name}  {line}"
