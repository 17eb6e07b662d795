from accounts.selectors import api_key_get
from accounts.services import api_key_revoke
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Revoke an API key by id; it stops working on every web process at once."

    def add_args(self, parser) -> None:
        parser.add_argument("key_id", type=int)

    def run(self, *, key_id, **_):
        key = api_key_revoke(key=api_key_get(key_id=key_id))
        return {"id": key.pk, "tenant_id": key.tenant_id, "status": key.status}, f"revoked key {key.prefix}… of {key.tenant.name}"
