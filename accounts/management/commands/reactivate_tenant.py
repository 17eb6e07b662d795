from accounts.models import Tenant
from accounts.selectors import tenant_get
from accounts.services import tenant_set_status
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Reactivate a suspended tenant."

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")

    def run(self, *, tenant, **_):
        found = tenant_set_status(tenant=tenant_get(ref=tenant), status=Tenant.Status.ACTIVE)
        return {"id": found.pk, "name": found.name, "status": found.status}, f"{found.name} is {found.status}"
