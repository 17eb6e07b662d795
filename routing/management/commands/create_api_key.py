from accounts.selectors import tenant_get
from accounts.services import api_key_create
from billing.money import parse_micros
from common.cli import JsonCommand, csv_list, datetime_arg, int_arg, non_empty_csv


class Command(JsonCommand):
    help = "Create an API key for a tenant; the key is printed this once and never stored."

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")
        parser.add_argument("--name", default="")
        parser.add_argument("--models", type=non_empty_csv, help="allowed public model ids a,b (default: all)")
        parser.add_argument("--ips", help="allowed client IPs or CIDRs (default: anywhere)")
        parser.add_argument("--rpm", type=int_arg(low=1), help="requests per minute (default: no limit)")
        parser.add_argument("--tpm", type=int_arg(low=1), help="tokens per minute (default: no limit)")
        parser.add_argument("--daily-cap", help="USD per day")
        parser.add_argument("--monthly-cap", help="USD per month")
        parser.add_argument("--expires", type=datetime_arg, help="ISO 8601 date or time (UTC unless given)")
        parser.add_argument("--mode", default="", help="routing mode for this key (cheap, normal, thompson, ...)")
        parser.add_argument("--no-directives", action="store_true", help="refuse X-TokenHub-* headers and @tokenhub lines")

    def run(self, *, tenant, name, models, ips, rpm, tpm, daily_cap, monthly_cap, expires, mode, no_directives=False, **_):
        owner = tenant_get(ref=tenant)
        key, secret = api_key_create(
            tenant=owner,
            name=name,
            allowed_models=models or [],
            allowed_ips=csv_list(ips),
            rpm=rpm,
            tpm=tpm,
            daily_cap_micros=parse_micros(daily_cap, what="daily cap") if daily_cap is not None else None,
            monthly_cap_micros=parse_micros(monthly_cap, what="monthly cap") if monthly_cap is not None else None,
            expires_at=expires,
            mode=mode,
            allows_directives=not no_directives,
        )
        result = {
            "id": key.pk,
            "key": secret,
            "prefix": key.prefix,
            "tenant": owner.name,
            "tenant_id": owner.pk,
            "name": key.name,
            "models": key.allowed_models,
            "rpm": key.rpm,
            "tpm": key.tpm,
            "daily_cap_micros": key.daily_cap_micros,
            "monthly_cap_micros": key.monthly_cap_micros,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "mode": key.mode,
            "allows_directives": key.allows_directives,
        }
        return result, f"created key {key.pk} for {owner.name}: {secret}\n(shown this once; it is not stored)"
