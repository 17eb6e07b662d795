from django.core.management.base import CommandError

from common.cli import JsonCommand
from vault.crypto import VaultLocked
from vault.management.passwords import passwords_read
from vault.services import vault_unlock


class Command(JsonCommand):
    help = "Unlock the vault with its password (read from --password-file, or the first line of stdin)."

    def add_args(self, parser) -> None:
        parser.add_argument("--password-file", default=None, help="a file holding the password ('-': stdin, the default)")

    def run(self, *, password_file, **_):
        (password,) = passwords_read(path=password_file, count=1)
        try:
            state = vault_unlock(password=password)
        except VaultLocked as exc:
            raise CommandError(f"{exc}; nothing changed") from None
        return {"is_locked": False, "generation": state.generation}, "vault unlocked; each process opens it with its own password"
