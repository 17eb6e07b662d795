"""What a request costs. Pure functions over integers and Decimals; no database.

    list cost (micro-USD) = ceil( (uncached_prompt * input + cached_prompt * cached_input
                                   + cache_written * cache_write + completion * output)
                                  / 1_000_000 ) + per_request
    charge (micro-units of the balance's currency)
                          = ceil( list cost * group ratio * channel discount * units per USD )

Prices are micro-USD per 1M tokens. The tier is the one with the highest `above_prompt_tokens`
that the prompt exceeds (Gemini and Claude charge more for long prompts). Rounding is up, once,
at the end: a request is never free by rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .money import ceil_div, decimal_ceil

PER_M = 1_000_000


@dataclass(frozen=True, slots=True)
class PriceSnapshot:
    model: str
    input_micros_per_m: int
    output_micros_per_m: int
    cached_input_micros_per_m: int | None = None
    cache_write_micros_per_m: int | None = None
    request_micros: int = 0
    image_micros: int = 0  # per image made
    second_micros: int = 0  # per second of audio transcribed
    tiers: tuple[dict, ...] = field(default_factory=tuple)
    is_free: bool = False

    def for_prompt(self, prompt_tokens: int) -> PriceSnapshot:
        chosen = None
        for tier in self.tiers:
            if prompt_tokens > int(tier["above_prompt_tokens"]) and (
                chosen is None or int(tier["above_prompt_tokens"]) > int(chosen["above_prompt_tokens"])
            ):
                chosen = tier
        if chosen is None:
            return self
        return PriceSnapshot(
            model=self.model,
            input_micros_per_m=int(chosen.get("input_micros_per_m", self.input_micros_per_m)),
            output_micros_per_m=int(chosen.get("output_micros_per_m", self.output_micros_per_m)),
            cached_input_micros_per_m=chosen.get("cached_input_micros_per_m", self.cached_input_micros_per_m),
            cache_write_micros_per_m=chosen.get("cache_write_micros_per_m", self.cache_write_micros_per_m),
            request_micros=self.request_micros,
            image_micros=self.image_micros,
            second_micros=self.second_micros,
            is_free=self.is_free,
        )


def list_cost_micros(
    price: PriceSnapshot, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
) -> int:
    """The list price of a usage in micro-USD. `prompt_tokens` includes the cached (read) and
    cache-written tokens, as OpenAI counts them."""
    if price.is_free:
        return 0
    tier = price.for_prompt(prompt_tokens)
    cached = min(max(cached_tokens, 0), prompt_tokens)
    written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
    cached_price = tier.cached_input_micros_per_m if tier.cached_input_micros_per_m is not None else tier.input_micros_per_m
    write_price = tier.cache_write_micros_per_m if tier.cache_write_micros_per_m is not None else tier.input_micros_per_m
    numerator = (
        (prompt_tokens - cached - written) * tier.input_micros_per_m
        + cached * cached_price
        + written * write_price
        + completion_tokens * tier.output_micros_per_m
    )
    return ceil_div(numerator, PER_M) + tier.request_micros


def media_list_cost_micros(price: PriceSnapshot, *, images: int = 0, seconds: int = 0) -> int:
    """The list price in micro-USD of one media request (images, audio, moderations): the
    per-request price plus `images` x the per-image and `seconds` x the per-second price."""
    if price.is_free:
        return 0
    return price.request_micros + max(images, 0) * price.image_micros + max(seconds, 0) * price.second_micros


def charge_micros(list_micros: int, *, group_ratio: Decimal, discount_ratio: Decimal, units_per_usd: Decimal) -> int:
    """A list cost in micro-USD converted into what the balance pays, in its own micro-units."""
    if list_micros <= 0:
        return 0
    return decimal_ceil(Decimal(list_micros) * group_ratio * discount_ratio * units_per_usd)
