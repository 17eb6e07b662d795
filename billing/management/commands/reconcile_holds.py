from django.conf import settings
from django.core.management.base import CommandError

from billing.services import holds_reconcile
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "End holds left open by requests whose process died (settled for the prompt's cost)."
    atomic = False

    def add_args(self, parser) -> None:
        parser.add_argument("--older-than", type=float, default=None, help="seconds since the hold's lease was last renewed (default: HOLD_RECONCILE_AFTER_S)")

    def run(self, *, older_than, **_):
        if older_than is None:
            older_than = settings.HOLD_RECONCILE_AFTER_S
        if older_than < 0:
            raise CommandError("--older-than must not be negative")
        result = holds_reconcile(older_than_s=older_than)
        return result, f"settled {result['settled']} abandoned hold(s)"
