from accounts.services import operator_token_create
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Create a management-API token; it is printed this once and only its hash is kept."

    def add_args(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--read-only", action="store_true", help="GET requests only")

    def run(self, *, name, read_only, **_):
        token, secret = operator_token_create(name=name, is_read_only=read_only)
        scope = "read-only" if token.is_read_only else "read-write"
        return (
            {"id": token.pk, "name": token.name, "read_only": token.is_read_only, "token": secret},
            f"created {scope} operator token {token.name} (id {token.pk}); it is shown only now:\n{secret}",
        )
