import json
from decimal import Decimal, InvalidOperation

from billing.services import price_set
from channels.selectors import model_owning
from common.cli import JsonCommand, non_empty


class Command(JsonCommand):
    help = "Set a model's list price in USD per 1M tokens (or mark it free)."

    def add_args(self, parser) -> None:
        parser.add_argument("model")
        parser.add_argument("--input", type=non_empty, help="USD per 1M input tokens")
        parser.add_argument("--output", type=non_empty, help="USD per 1M output tokens")
        parser.add_argument("--cached-input", type=non_empty, help="USD per 1M cached input tokens (default: the input price)")
        parser.add_argument("--cache-write", type=non_empty, help="USD per 1M prompt tokens written to a cache (default: the input price)")
        parser.add_argument("--request", "--per-request", dest="request", type=non_empty, help="USD per request, for models priced that way")
        parser.add_argument("--per-image", type=non_empty, help="USD per image made (/v1/images/generations)")
        parser.add_argument("--per-second", type=non_empty, help="USD per second of audio transcribed (/v1/audio/transcriptions)")
        parser.add_argument(
            "--tiers",
            help='JSON list of prices above a prompt length: [{"above_prompt_tokens": 200000, "input": 2.5, "output": 15}]',
        )
        parser.add_argument("--free", action="store_true", help="serve it without charging")

    def run(self, *, model, input, output, cached_input, cache_write, request, per_image, per_second, tiers, free, **_):
        _require_catalog_model(model)
        prices = {"--input": input, "--output": output, "--cached-input": cached_input, "--cache-write": cache_write,
                  "--request": request, "--per-image": per_image, "--per-second": per_second, "--tiers": tiers}
        # --free with prices of 0 (`--input 0 --output 0 --free`) says one thing twice; a price
        # above 0 beside it contradicts it
        priced = [flag for flag, value in prices.items() if value is not None and not _is_zero(value)]
        if free and priced:
            raise ValueError(f"--free takes no prices above 0: leave out {', '.join(priced)}")
        if free:
            input = output = cached_input = cache_write = request = per_image = per_second = tiers = None
        parsed_tiers = None
        if tiers:
            from billing.money import parse_micros

            try:
                raw = json.loads(tiers)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--tiers is not JSON: {exc.msg}") from None
            if not isinstance(raw, list):
                raise ValueError("--tiers must be a JSON list")
            parsed_tiers = []
            for tier in raw:
                if not isinstance(tier, dict) or "above_prompt_tokens" not in tier:
                    raise ValueError("each tier needs above_prompt_tokens")
                converted = {"above_prompt_tokens": int(tier["above_prompt_tokens"])}
                for name in ("input", "output", "cached_input", "cache_write"):
                    if name in tier:
                        converted[f"{name}_micros_per_m"] = parse_micros(tier[name], what=f"tier {name} price")
                parsed_tiers.append(converted)
        price = price_set(
            model=model, input_usd_per_m=input, output_usd_per_m=output, cached_input_usd_per_m=cached_input,
            cache_write_usd_per_m=cache_write, request_usd=request, tiers=parsed_tiers, is_free=free,
            image_usd=per_image, second_usd=per_second,
        )
        result = {
            "id": price.pk,
            "model": price.model,
            "free": price.is_free,
            "input_micros_per_m": price.input_micros_per_m,
            "output_micros_per_m": price.output_micros_per_m,
            "cached_input_micros_per_m": price.cached_input_micros_per_m,
            "cache_write_micros_per_m": price.cache_write_micros_per_m,
            "request_micros": price.request_micros,
            "image_micros": price.image_micros,
            "second_micros": price.second_micros,
            "tiers": price.tiers,
        }
        what = "free" if price.is_free else f"{input} in / {output} out USD per 1M tokens"
        if not price.is_free and input is None and output is None:
            what = f"{request or 0} per request, {per_image or 0} per image, {per_second or 0} per second (USD)"
        return result, f"price of {price.model} set: {what}"


def _require_catalog_model(public_id: str) -> None:
    """A price for a model nobody serves is a typo waiting to bite: refuse it here (the
    service stays open for pricing sync, which may price ahead of the catalog)."""
    owner = model_owning(name=public_id)
    if owner is None:
        raise ValueError(f"unknown model {public_id!r}: add it first with set_model or add_channel")
    if owner[1]:
        raise ValueError(f"{public_id!r} is an alias of {owner[0]!r}: set the price of {owner[0]!r}")


def _is_zero(text: str) -> bool:
    try:
        return Decimal(text.strip()) == 0
    except (InvalidOperation, AttributeError):
        return False
