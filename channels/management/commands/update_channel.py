from channels.models import BillingClass
from channels.selectors import channel_describe, channel_get
from channels.services import channel_update, parse_model_specs
from common.cli import INT_MAX, JsonCommand, csv_list, int_arg


class Command(JsonCommand):
    help = "Change a channel's settings; what is not given stays. The credential: set_channel_credential."

    def add_args(self, parser) -> None:
        parser.add_argument("channel", help="channel name or id")
        parser.add_argument("--name")
        parser.add_argument("--base-url")
        parser.add_argument("--brand")
        parser.add_argument("--models", help="the full new list m1,m2[=upstream_name]")
        parser.add_argument("--priority", type=int_arg(low=-INT_MAX - 1))
        parser.add_argument("--weight", type=int_arg(low=1))
        parser.add_argument("--billing", choices=BillingClass.values)
        parser.add_argument("--groups", help="g1,g2")
        parser.add_argument("--cost-ratio")
        parser.add_argument("--discount-ratio")

    def run(self, *, channel, name, base_url, brand, models, priority, weight, billing, groups, cost_ratio, discount_ratio, **_):
        found = channel_get(ref=channel)
        updated = channel_update(
            channel=found, models=parse_model_specs(csv_list(models)) if models is not None else None, name=name, base_url=base_url,
            brand=brand, priority=priority, weight=weight, billing=billing, groups=csv_list(groups) if groups is not None else None,
            cost_ratio=cost_ratio, discount_ratio=discount_ratio,
        )
        return channel_describe(updated), f"updated channel {updated.name} (id {updated.pk})"
