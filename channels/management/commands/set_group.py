from billing.services import group_set
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Set a price group's ratio (every list price times it) and, optionally, its default routing mode."

    def add_args(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--ratio", required=True, help="e.g. 0.8 for 20%% off")
        parser.add_argument("--mode", help="default routing mode of the group")

    def run(self, *, name, ratio, mode, **_):
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"group {name!r} must be letters, digits, - or _")
        try:
            group = group_set(name=name, ratio=ratio, mode=mode)
        except ArithmeticError:
            raise ValueError(f"ratio {ratio!r} is not a number") from None
        group.refresh_from_db()
        return {
            "id": group.pk,
            "name": group.name,
            "ratio": str(group.ratio),
            "mode": group.mode,
        }, f"group {group.name}: ratio {group.ratio}"
