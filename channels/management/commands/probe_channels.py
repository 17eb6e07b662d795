from channels.health.probes import channel_probe
from channels.models import Channel
from channels.tasks import probes_run
from common.cli import JsonCommand


class Command(JsonCommand):
    help = (
        "Send a tiny real request through channels: by default the ones in a failure streak or disabled by TokenHub "
        "(after the error-rate sweep), as the periodic job does; or the named ones. Success re-enables."
    )

    atomic = False  # network calls; each probe records its own outcome

    def add_args(self, parser) -> None:
        parser.add_argument("channels", nargs="*", help="channel names (default: those the job would probe)")
        parser.add_argument("--model", default=None, help="probe this public model id (default: the channel's first)")

    def run(self, *, channels, model, **_):
        if not channels:
            result = probes_run()
        else:
            found = {c.name: c.pk for c in Channel.objects.filter(name__in=channels)}
            unknown = [name for name in channels if name not in found]
            if unknown:
                raise ValueError(f"no channel named {', '.join(unknown)}")
            results = [channel_probe(channel_id=found[name], model=model) for name in channels]
            result = {"probed": len(results), "ok": sum(r.is_ok for r in results), "re_enabled": sum(r.re_enabled for r in results),
                      "results": [r.as_dict() for r in results]}
        lines = [f"probed {result['probed']}, ok {result['ok']}, re-enabled {result['re_enabled']}"]
        lines += [
            f"  {r['channel']} / {r['model']}: {'ok' if r['ok'] else 'FAILED ' + r['error']} ({r['latency_ms']} ms)"
            for r in result["results"]
        ]
        return result, "\n".join(lines)
