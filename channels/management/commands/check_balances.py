from channels.tasks import balances_check
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Read every channel's upstream balance where the brand has an endpoint; warn when low, disable at zero."

    atomic = False

    def run(self, **_):
        counts = balances_check()
        return counts, ", ".join(f"{k} {v}" for k, v in counts.items())
