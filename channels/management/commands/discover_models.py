from channels.discovery import KINDS, channel_models_apply, channel_models_discover
from channels.models import Channel
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "List the models a channel's upstream serves and propose the ones it lacks; --apply adds them."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")
        parser.add_argument("--apply", action="store_true", help="add the proposed models to the channel")
        parser.add_argument("--kind", choices=[*KINDS, "all"], default="all", help="only chat or only embedding models")

    def run(self, *, channel, apply, kind, **_):
        found = Channel.objects.filter(name=channel).first()
        if found is None and channel.isdigit():
            found = Channel.objects.filter(pk=int(channel)).first()
        if found is None:
            raise ValueError(f"no channel named {channel!r}")
        proposal = channel_models_discover(channel=found, kinds=KINDS if kind == "all" else (kind,))
        added = channel_models_apply(channel=found, models=proposal.new) if apply else []
        result = {
            "id": found.pk,
            "channel": found.name,
            "found": len(proposal.found),
            "existing": proposal.existing,
            "proposed": [
                {
                    "model": m.id,
                    "upstream_name": m.id,
                    "display_name": m.display_name,
                    "context_window": m.context_window,
                    "max_output": m.max_output,
                    "kinds": list(m.kinds),
                }
                for m in proposal.new
            ],
            "applied": apply,
            "added": [row.model.public_id for row in added],
        }
        if apply:
            line = f"{found.name}: {len(proposal.found)} listed, {len(added)} added, {len(proposal.existing)} already served"
        else:
            names = ", ".join(m.id for m in proposal.new) or "none"
            line = f"{found.name}: {len(proposal.found)} listed; not yet served: {names} (run again with --apply to add them)"
        return result, line
