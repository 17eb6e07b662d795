from channels.health.status import channel_operator_set
from channels.selectors import channel_describe, channel_get
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Disable a channel, with a reason operators will see."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")
        parser.add_argument("--reason", default="", help="shown beside the channel and in skipped requests' logs")

    def run(self, *, channel, **options):
        found = channel_operator_set(channel=channel_get(ref=channel), is_enabled=False, reason=options["reason"])
        return channel_describe(found), f"channel {found.name} is {found.status}"
