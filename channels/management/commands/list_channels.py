from channels.models import Channel
from channels.selectors import channel_describe
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "List channels (never their credentials)."

    def add_args(self, parser) -> None:
        parser.add_argument("--status", choices=Channel.Status.values)

    def run(self, *, status, **_):
        channels = Channel.objects.order_by("-priority", "name")
        if status:
            channels = channels.filter(status=status)
        rows = [channel_describe(c) for c in channels]
        lines = [
            f"{r['id']:>5}  {r['name']:<24} {r['provider_type']:<10} p{r['priority']:<4} w{r['weight']:<4} {r['status']}" for r in rows
        ]
        return {"channels": rows}, "\n".join(lines) or "no channels"
