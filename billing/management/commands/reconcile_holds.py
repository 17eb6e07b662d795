from billing.services import holds_reconcile
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "End holds left open by requests whose process died (settled for the prompt's cost)."
    atomic = False

    def add_args(self, parser) -> None:
        parser.add_argument("--older-than", type=float, default=600.0, help="seconds (default 600)")

    def run(self, *, older_than, **_):
        result = holds_reconcile(older_than_s=older_than)
        return result, f"settled {result['settled']} abandoned hold(s)"
