from accounts.services import InvalidInput, tenant_create
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Create a tenant (in group `default` unless --group), with its Credit and Wallet balances."

    def add_args(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--group", default="default")
        parser.add_argument("--timezone", default="UTC", help="where its keys' daily/monthly caps roll over")

    def run(self, *, name, group, timezone, **_):
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(timezone)
        except Exception:
            raise InvalidInput(f"unknown time zone {timezone!r}") from None
        tenant = tenant_create(name=name, group=group, timezone=timezone)
        line = f"created tenant {tenant.name} (id {tenant.pk}, group {tenant.group})"
        return {"id": tenant.pk, "name": tenant.name, "group": tenant.group}, line
