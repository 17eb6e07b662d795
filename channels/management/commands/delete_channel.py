from channels.selectors import channel_get
from channels.services import channel_delete
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Delete a channel that never served a request; one that did is refused (or, with --disable-instead, disabled)."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")
        parser.add_argument("--disable-instead", action="store_true", help="when it has history, disable it rather than fail")

    def run(self, *, channel, disable_instead, **_):
        found = channel_get(ref=channel)
        channel_id, name = found.pk, found.name
        deleted = channel_delete(channel=found, disable_instead=disable_instead)
        line = f"deleted channel {name}" if deleted else f"channel {name} has request history: disabled instead of deleted"
        return {"id": channel_id, "deleted": deleted, "disabled": not deleted}, line
