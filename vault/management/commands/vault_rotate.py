from django.core.management.base import CommandError

from common.cli import JsonCommand
from vault.crypto import SecretUnreadable
from vault.management.passwords import passwords_read
from vault.services import vault_rotate


class Command(JsonCommand):
    help = (
        "Re-seal every upstream credential under a new vault password, without downtime. Reads the "
        "current password and the new one, one a line, from --password-file or stdin."
    )

    def add_args(self, parser) -> None:
        parser.add_argument("--password-file", default=None, help="a file: current password, then the new one ('-': stdin)")

    def run(self, *, password_file, **_):
        password, new_password = passwords_read(path=password_file, count=2)
        try:
            state, count = vault_rotate(password=password, new_password=new_password)
        except SecretUnreadable as exc:
            raise CommandError(f"{exc}; nothing changed") from None
        return (
            {"rewrapped": count, "generation": state.generation},
            f"re-sealed {count} credential(s); set TOKENHUB_VAULT_PASSWORD to the new password before the next restart",
        )
