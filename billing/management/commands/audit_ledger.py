
from billing.services import ledger_audit
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Check that every balance equals the sum of its ledger entries; exit 1 on any mismatch."
    atomic = False
    is_mutating = False

    def run(self, **options):
        mismatches = ledger_audit()
        result = {"ok": not mismatches, "mismatches": mismatches}
        if mismatches:
            if options["json"]:
                import json

                self.stdout.write(json.dumps(result, default=str))
            else:
                for mismatch in mismatches:
                    self.stderr.write(str(mismatch))
            raise SystemExit(1)
        return result, "ledger ok: every balance equals the sum of its entries"
