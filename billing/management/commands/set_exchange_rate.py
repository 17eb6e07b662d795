from billing.services import exchange_rate_set
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Set how many units of CURRENCY one USD buys (Wallet charges are USD prices times this)."

    def add_args(self, parser) -> None:
        parser.add_argument("currency")
        parser.add_argument("rate")

    def run(self, *, currency, rate, **_):
        obj = exchange_rate_set(currency=currency, units_per_usd=rate)
        return {"id": obj.pk, "currency": obj.currency, "units_per_usd": str(obj.units_per_usd)}, f"1 USD = {obj.units_per_usd} {obj.currency}"
