from django.conf import settings
from django.core.management.base import CommandError

from channels.discovery import base_url_check
from channels.keys import keys_parse
from channels.models import BillingClass, ProviderType
from channels.services import channel_create, parse_model_specs
from common.cli import INT_MAX, JsonCommand, csv_list, int_arg


class Command(JsonCommand):
    help = "Add an upstream channel. A higher --priority is tried first; equal priorities share traffic by --weight."

    def add_args(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--type", required=True, choices=ProviderType.values, dest="provider_type")
        parser.add_argument("--base-url", required=True, help="API root as the vendor SDK takes it (openai: up to /v1)")
        parser.add_argument(
            "--api-key", action="append", default=[], dest="api_key",
            help="upstream credential; stored sealed by the vault. Repeat it for a channel of several keys "
                 "(requests spread over them; see docs/routing.md)",
        )
        parser.add_argument("--models", required=True, help="m1,m2[=upstream_name]")
        parser.add_argument("--priority", type=int_arg(low=-INT_MAX - 1), default=0)
        parser.add_argument("--weight", type=int_arg(low=1), default=1)
        parser.add_argument("--billing", choices=BillingClass.values, default=BillingClass.OFFICIAL)
        parser.add_argument("--groups", default="", help="tenant groups served (default: default)")
        parser.add_argument("--cost-ratio", default="1", help="operator cost relative to list price")
        parser.add_argument("--discount-ratio", default="1", help="customer price factor on this channel")
        parser.add_argument("--brand", default="", help="e.g. openai, deepseek, azure (default: the type)")
        parser.add_argument(
            "--no-check", action="store_false", dest="check",
            help="skip checking the base URL (openai: GET <base>/models must answer)",
        )

    def run(
        self,
        *,
        name,
        provider_type,
        base_url,
        api_key,
        models,
        priority,
        weight,
        billing,
        groups,
        cost_ratio,
        discount_ratio,
        brand,
        check,
        **_,
    ):
        try:
            keys = keys_parse(api_key)
        except ValueError as exc:
            raise CommandError(f"--api-key: {exc}") from None
        if check:
            base_url_check(
                provider_type=provider_type, base_url=base_url, api_key=keys[0] if keys else "", brand=brand,
                timeout_s=settings.CHANNEL_CHECK_TIMEOUT_S,
            )
        channel = channel_create(
            name=name,
            provider_type=provider_type,
            base_url=base_url,
            api_key=keys,
            models=parse_model_specs(csv_list(models)),
            priority=priority,
            weight=weight,
            billing=billing,
            groups=csv_list(groups) or None,
            cost_ratio=cost_ratio,
            discount_ratio=discount_ratio,
            brand=brand,
        )
        served = [cm.model.public_id for cm in channel.channel_models.select_related("model")]
        result = {
            "id": channel.pk,
            "name": channel.name,
            "type": channel.provider_type,
            "models": served,
            "priority": channel.priority,
            "weight": channel.weight,
            "billing": channel.billing,
            "groups": channel.groups,
            "key_count": len(keys),
        }
        return result, f"created channel {channel.name} (id {channel.pk}) serving {', '.join(served)}"
