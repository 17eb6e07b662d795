from channels.simulator import simulate
from channels.strategies import MODES
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "What-if: rank the candidates of MODEL for a group and mode, with scores and skip reasons. Sends nothing."

    atomic = False
    is_mutating = False

    def add_args(self, parser) -> None:
        parser.add_argument("model")
        parser.add_argument("--group", default="default")
        parser.add_argument("--mode", choices=MODES, default=None, help="default: the group's mode, else ROUTING_DEFAULT_MODE")
        parser.add_argument("--seed", type=int, default=None, help="fix the random draws (the router seeded alike chooses the same)")

    def run(self, *, model, group, mode, seed, **_):
        result = simulate(model=model, group=group, mode=mode, seed=seed)
        lines = [f"{result['model']} for group {group!r}, mode {result['mode']}:"]
        for c in result["candidates"]:
            if c["eligible"]:
                lines.append(f"  {c['rank']}. {c['channel']} (priority {c['priority']}, score {c['score']}, {c['state']})")
            else:
                lines.append(f"  -  {c['channel']}: {c['reason']}")
        return result, "\n".join(lines)
