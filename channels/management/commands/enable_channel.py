from channels.health.status import channel_operator_set
from channels.selectors import channel_describe, channel_get
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Enable a channel (and forget its cooldowns)."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")


    def run(self, *, channel, **options):
        found = channel_operator_set(channel=channel_get(ref=channel), is_enabled=True)
        return channel_describe(found), f"channel {found.name} is {found.status}"
