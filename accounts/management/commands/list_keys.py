from accounts.models import ApiKey
from accounts.selectors import tenant_get
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "List a tenant's API keys (prefixes only: secrets are never stored)."

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")
        parser.add_argument("--status", choices=ApiKey.Status.values)

    def run(self, *, tenant, status, **_):
        owner = tenant_get(ref=tenant)
        keys = owner.api_keys.order_by("id")
        if status:
            keys = keys.filter(status=status)
        rows = [
            {"id": k.pk, "name": k.name, "prefix": k.prefix, "status": k.status, "allowed_models": k.allowed_models, "rpm": k.rpm,
             "tpm": k.tpm, "daily_cap_micros": k.daily_cap_micros, "monthly_cap_micros": k.monthly_cap_micros,
             "expires_at": k.expires_at.isoformat() if k.expires_at else None,
             "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}
            for k in keys
        ]
        lines = [f"{r['id']:>6}  {r['prefix']}…  {r['status']:<8} {r['name']}" for r in rows]
        return {"tenant_id": owner.pk, "keys": rows}, "\n".join(lines) or f"{owner.name} has no keys"
