import json

from channels.selectors import channel_describe, channel_get
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Show one channel (whether it has a credential, never the credential)."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")

    def run(self, *, channel, **_):
        described = channel_describe(channel_get(ref=channel))
        return described, json.dumps(described, indent=2)
