"""Prices, group ratios and exchange rates for the hot path, read into memory and refreshed
every TTL_S seconds in the background (at once after a local change). Only prices are cached here: balances and
caps are checked in the database by every hold, so no cache can let anyone overspend."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from common.config_version import config_follow
from common.snapshot import Snapshot

from .pricing import PriceSnapshot

TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class RateCard:
    prices: dict[str, PriceSnapshot]
    group_ratios: dict[str, Decimal]
    group_modes: dict[str, str]  # a group's default routing mode, where one is set
    units_per_usd: dict[str, Decimal]

    def group_ratio(self, group: str) -> Decimal:
        return self.group_ratios.get(group, Decimal(1))

    def rate(self, currency: str) -> Decimal | None:
        if currency == "USD":
            return Decimal(1)
        return self.units_per_usd.get(currency)


def ratecard_build() -> RateCard:
    from .models import ExchangeRate, Group, Price

    prices = {
        p.model: PriceSnapshot(
            model=p.model,
            input_micros_per_m=p.input_micros_per_m,
            output_micros_per_m=p.output_micros_per_m,
            cached_input_micros_per_m=p.cached_input_micros_per_m,
            cache_write_micros_per_m=p.cache_write_micros_per_m,
            request_micros=p.request_micros,
            image_micros=p.image_micros,
            second_micros=p.second_micros,
            tiers=tuple(p.tiers or ()),
            is_free=p.is_free,
        )
        for p in Price.objects.all()
    }
    groups = list(Group.objects.values_list("name", "ratio", "mode"))
    rates = dict(ExchangeRate.objects.values_list("currency", "units_per_usd"))
    return RateCard(
        prices,
        {name: ratio for name, ratio, _ in groups},
        {name: mode for name, _, mode in groups if mode},
        rates,
    )


_card: Snapshot[RateCard] = Snapshot(ratecard_build, ttl_s=lambda: TTL_S, name="rate card")
config_follow(_card.invalidate)


async def ratecard_aget() -> RateCard:
    return await _card.aget()


def ratecard_get() -> RateCard:
    """The same, from synchronous code (the admin's simulator, commands)."""
    return _card.get()


def invalidate() -> None:
    _card.invalidate()
