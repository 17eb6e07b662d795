from django.conf import settings

from billing.sync import price_changes_accept_open
from channels.tasks import prices_sync_from_source
from common.cli import JsonCommand


class Command(JsonCommand):
    help = (
        "Read a per-model price document (URL or file) and propose, or with --apply apply, our list prices "
        "(source x --markup). A price the source would zero is refused, never applied. "
        "--accept-proposed applies the open proposals instead."
    )

    def add_args(self, parser) -> None:
        parser.add_argument("source", nargs="?", default=None, help="URL or file (default: PRICING_SYNC_SOURCE)")
        parser.add_argument("--markup", default=None, help="multiply source prices by this (default: PRICING_SYNC_MARKUP)")
        parser.add_argument("--apply", action="store_true", help="apply now instead of proposing")
        parser.add_argument("--accept-proposed", action="store_true", help="apply every open proposal")

    def run(self, *, source, markup, apply, accept_proposed, **_):
        if accept_proposed:
            accepted = price_changes_accept_open()
            return {"accepted": [c.pk for c in accepted]}, f"applied {len(accepted)} proposed price change(s)"
        source = source or settings.PRICING_SYNC_SOURCE
        if not source:
            raise ValueError("give a SOURCE or set PRICING_SYNC_SOURCE")
        report = prices_sync_from_source(source=source, markup=markup or settings.PRICING_SYNC_MARKUP, apply=apply)
        line = (
            f"{len(report['applied'])} applied, {len(report['proposed'])} proposed, {len(report['refused'])} refused, "
            f"{len(report['unchanged'])} unchanged, {len(report['missing'])} not in the source"
        )
        return report, line
