import sys
from pathlib import Path

from django.core.management.base import CommandError

from channels.keys import keys_parse
from channels.selectors import channel_get
from channels.services import channel_credential_set
from common.cli import JsonCommand


class Command(JsonCommand):
    help = ("Replace a channel's upstream credential, read from --api-key-file or standard input (never from the command "
            "line, where other users and shell history would see it): one key a line, several for a multi-key channel. "
            "It is sealed by the vault and never printed.")

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")
        parser.add_argument("--api-key-file", help="a file holding the credential: one key a line")

    def run(self, *, channel, api_key_file, **_):
        found = channel_get(ref=channel)
        if api_key_file:
            try:
                secret = Path(api_key_file).read_text()
            except OSError as exc:
                raise CommandError(f"cannot read {api_key_file}: {exc.strerror}") from None
        else:
            if sys.stdin is None or sys.stdin.isatty():
                raise CommandError("give the credential on standard input or with --api-key-file")
            secret = sys.stdin.read()
        secret = secret.strip()
        if not secret:
            raise CommandError("the credential is empty")
        try:
            keys = keys_parse(secret)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        channel_credential_set(channel=found, api_key=keys)
        return (
            {"id": found.pk, "name": found.name, "has_credential": True},  # the keys' states: show_channel --json
            f"credential of channel {found.name} replaced ({len(keys)} key{'s' if len(keys) != 1 else ''})",
        )
