from django.conf import settings

from billing.services import holds_reconcile
from common.cli import JsonCommand, seconds_arg

MAX_AGE_S = 10 * 365 * 86400  # older than any hold; what the clock can subtract safely


class Command(JsonCommand):
    help = "End holds left open by requests whose process died (settled for the prompt's cost)."
    atomic = False

    def add_args(self, parser) -> None:
        parser.add_argument("--older-than", type=seconds_arg(high=MAX_AGE_S), default=None, help="seconds since the hold's lease was last renewed (default: HOLD_RECONCILE_AFTER_S)")

    def run(self, *, older_than, **_):
        if older_than is None:
            older_than = settings.HOLD_RECONCILE_AFTER_S
        result = holds_reconcile(older_than_s=older_than)
        return result, f"settled {result['settled']} abandoned hold(s)"
