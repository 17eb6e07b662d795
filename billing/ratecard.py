"""Prices, group ratios and exchange rates for the hot path, read into memory and refreshed
every RATECARD_TTL_S (at once after a local change). Only prices are cached here: balances and
caps are checked in the database by every hold, so no cache can let anyone overspend."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from relay.db import run_db

from .pricing import PriceSnapshot

TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class RateCard:
    prices: dict[str, PriceSnapshot]
    group_ratios: dict[str, Decimal]
    group_modes: dict[str, str]  # a group's default routing mode, where one is set
    units_per_usd: dict[str, Decimal]
    built_at: float

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
        time.monotonic(),
    )


_card: RateCard | None = None


def _is_fresh(card: RateCard | None) -> bool:
    return card is not None and time.monotonic() - card.built_at <= TTL_S


async def ratecard_aget() -> RateCard:
    global _card
    card = _card
    if not _is_fresh(card):
        card = _card = await run_db(ratecard_build)
    return card


def ratecard_get() -> RateCard:
    """The same, from synchronous code (the admin's simulator, commands)."""
    global _card
    card = _card
    if not _is_fresh(card):
        card = _card = ratecard_build()
    return card


def invalidate() -> None:
    global _card
    _card = None
