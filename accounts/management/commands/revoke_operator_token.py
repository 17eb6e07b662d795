from accounts.selectors import operator_token_get
from accounts.services import operator_token_revoke
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Revoke a management-API token (by id, or by name when unique); it stops working at once."

    def add_args(self, parser) -> None:
        parser.add_argument("token", help="token id or name")

    def run(self, *, token, **_):
        found = operator_token_revoke(token=operator_token_get(ref=token))
        line = f"revoked operator token {found.name} (id {found.pk})"
        return {"id": found.pk, "name": found.name, "revoked_at": found.revoked_at.isoformat()}, line
