"""Pricing sync: read a public per-model price list, propose or apply our list prices from it.

The source is a JSON object keyed by model name, each entry with per-token USD prices and
context limits, the layout many relays and SDKs share:

    {"gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                "cache_read_input_token_cost": 1.25e-06, "max_input_tokens": 128000,
                "max_output_tokens": 16384, "mode": "chat"}, ...}

Rules:
- our price = source price x markup, in micro-USD per 1M tokens (exact decimal arithmetic);
- never silently zero: a source price of 0 (or none) where we charge something is *refused*,
  recorded with a note, and the current price stays; the database refuses an applied change
  with no price at all;
- every change is history (`PriceChange`): proposed (an operator accepts it later), applied,
  refused, or superseded by a newer proposal; unchanged prices write nothing;
- free models and models with tiered prices are left alone (an operator set those by hand).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from .models import Price, PriceChange
from .money import format_micros
from .services import price_set

log = logging.getLogger(__name__)

MICROS_PER_M_PER_USD_PER_TOKEN = Decimal(10) ** 12  # USD/token -> micro-USD per 1M tokens
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourcePrice:
    key: str
    input_micros_per_m: int | None
    output_micros_per_m: int | None
    cached_input_micros_per_m: int | None
    context_window: int | None
    max_output: int | None


@dataclass
class SyncReport:
    source: str
    markup: Decimal
    is_applied: bool
    applied: list[dict] = field(default_factory=list)
    proposed: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # not in the source
    skipped: list[dict] = field(default_factory=list)  # free or tiered: ours to keep

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "markup": str(self.markup),
            "mode": "apply" if self.is_applied else "propose",
            "applied": self.applied,
            "proposed": self.proposed,
            "refused": self.refused,
            "unchanged": self.unchanged,
            "missing": self.missing,
            "skipped": self.skipped,
        }


# --- reading the source ------------------------------------------------------------------------


def pricing_document_read(*, source: str, timeout_s: float = 30.0) -> dict:
    """The document at a http(s) URL or in a file."""
    if source.startswith(("http://", "https://")):
        import httpx

        with httpx.Client(timeout=timeout_s, follow_redirects=True, trust_env=True) as client:
            response = client.get(source)
        if response.status_code != 200:
            raise ValueError(f"pricing source {source} answered HTTP {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"pricing source {source} is larger than {MAX_DOCUMENT_BYTES} bytes")
        text = response.text
    else:
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise ValueError(f"pricing source {source} is not a file or an http(s) URL")
        text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"pricing source {source} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"pricing source {source} must be a JSON object keyed by model name")
    return document


def _per_m_micros(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        per_token = Decimal(str(value))
    except InvalidOperation:
        return None
    if not per_token.is_finite() or per_token < 0:
        return None
    return int((per_token * MICROS_PER_M_PER_USD_PER_TOKEN).to_integral_value(rounding=ROUND_HALF_UP))


def _positive_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def pricing_document_parse(document: dict) -> dict[str, SourcePrice]:
    prices = {}
    for key, entry in document.items():
        if not isinstance(entry, dict) or key == "sample_spec":
            continue
        prices[key] = SourcePrice(
            key=key,
            input_micros_per_m=_per_m_micros(entry.get("input_cost_per_token")),
            output_micros_per_m=_per_m_micros(entry.get("output_cost_per_token")),
            cached_input_micros_per_m=_per_m_micros(entry.get("cache_read_input_token_cost")),
            context_window=_positive_int(entry.get("max_input_tokens") or entry.get("max_tokens")),
            max_output=_positive_int(entry.get("max_output_tokens")),
        )
    return prices


def source_lookup(prices: dict[str, SourcePrice], names: list[str]) -> SourcePrice | None:
    """The first of `names` the source knows, exactly, then ignoring case."""
    for name in names:
        if name in prices:
            return prices[name]
    lowered = {k.lower(): v for k, v in prices.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


# --- proposing and applying --------------------------------------------------------------------


def _marked_up(micros: int | None, markup: Decimal) -> int | None:
    if micros is None:
        return None
    return int((Decimal(micros) * markup).to_integral_value(rounding=ROUND_HALF_UP))


def _usd(micros: int | None) -> str | None:
    return None if micros is None else format_micros(micros)


def _row(change: PriceChange) -> dict:
    return {
        "id": change.pk,
        "model": change.model,
        "source_key": change.source_key,
        "old": {"input_micros_per_m": change.old_input_micros_per_m, "output_micros_per_m": change.old_output_micros_per_m,
                "cached_input_micros_per_m": change.old_cached_input_micros_per_m},
        "new": {"input_micros_per_m": change.new_input_micros_per_m, "output_micros_per_m": change.new_output_micros_per_m,
                "cached_input_micros_per_m": change.new_cached_input_micros_per_m},
        "note": change.note,
    }


def _apply(change: PriceChange, current: Price | None) -> None:
    price_set(
        model=change.model,
        input_usd_per_m=_usd(change.new_input_micros_per_m),
        output_usd_per_m=_usd(change.new_output_micros_per_m),
        cached_input_usd_per_m=_usd(change.new_cached_input_micros_per_m),
        # what the sync does not own is kept as it was (tiers: price_set keeps them when not given)
        request_usd=_usd(current.request_micros) if current else None,
        cache_write_usd_per_m=_usd(current.cache_write_micros_per_m) if current else None,
        image_usd=_usd(current.image_micros) if current else None,
        second_usd=_usd(current.second_micros) if current else None,
    )


def markup_parse(value: str | Decimal) -> Decimal:
    try:
        markup = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"markup {value!r} is not a number") from None
    if not markup.is_finite() or markup <= 0:
        raise ValueError("markup must be a positive number")
    return markup


@transaction.atomic
def prices_sync(
    *,
    source: str,
    markup: str | Decimal = "1",
    apply: bool = False,
    names: dict[str, list[str]] | None = None,
    document: dict | None = None,
) -> SyncReport:
    """Compare our prices with the source's and propose (or apply) the differences.

    `names` maps each public model id to the names to look it up by in the source (its own id
    first, then e.g. the upstream names its channels use); models that have a price are looked
    up by their own id when not named."""
    markup = markup_parse(markup)
    prices = pricing_document_parse(document if document is not None else pricing_document_read(source=source))
    current = {p.model: p for p in Price.objects.select_for_update()}
    names = {**{model: [model] for model in current}, **(names or {})}  # every priced model, and the caller's
    report = SyncReport(source=source, markup=markup, is_applied=apply)
    for model in sorted(names):
        price = current.get(model)
        if price is not None and (price.is_free or price.tiers):
            report.skipped.append({"model": model, "note": "marked free" if price.is_free else "has tiered prices"})
            continue
        entry = source_lookup(prices, names[model] or [model])
        if entry is None:
            report.missing.append(model)
            continue
        new_in = _marked_up(entry.input_micros_per_m, markup)
        new_out = _marked_up(entry.output_micros_per_m, markup)
        new_cached = _marked_up(entry.cached_input_micros_per_m, markup)
        if new_cached is None and price is not None:
            new_cached = price.cached_input_micros_per_m  # the source says nothing: keep ours
        old = (price.input_micros_per_m, price.output_micros_per_m, price.cached_input_micros_per_m) if price else (None, None, None)
        if (new_in, new_out, new_cached) == old:
            report.unchanged.append(model)
            continue
        change = PriceChange(
            model=model,
            source=source[:500],
            source_key=entry.key[:200],
            markup=markup,
            old_input_micros_per_m=old[0],
            old_output_micros_per_m=old[1],
            old_cached_input_micros_per_m=old[2],
            new_input_micros_per_m=new_in or 0,
            new_output_micros_per_m=new_out or 0,
            new_cached_input_micros_per_m=new_cached,
        )
        refusal = _refusal(old, new_in, new_out)
        if refusal:
            change.status, change.note, change.decided_at = PriceChange.Status.REFUSED, refusal, timezone.now()
            change.save()
            report.refused.append(_row(change))
            log.warning("pricing sync refused %s: %s", model, refusal)
            continue
        if _same_as_open_proposal(change):
            if not apply:
                report.unchanged.append(model)
                continue
        PriceChange.objects.filter(model=model, status=PriceChange.Status.PROPOSED).update(
            status=PriceChange.Status.SUPERSEDED, decided_at=timezone.now()
        )
        if apply:
            change.status, change.decided_at = PriceChange.Status.APPLIED, timezone.now()
            change.save()
            _apply(change, price)
            report.applied.append(_row(change))
        else:
            change.status = PriceChange.Status.PROPOSED
            change.save()
            report.proposed.append(_row(change))
    return report


def _refusal(old: tuple, new_in: int | None, new_out: int | None) -> str:
    for what, before, after in (("input", old[0], new_in), ("output", old[1], new_out)):
        if not after and before:
            return f"the source gives no {what} price (we charge {format_micros(before)} USD/M); kept ours"
    if not new_in and not new_out:
        return "the source gives no price for it; not marking it free"
    if new_in is None or new_out is None:
        return f"the source gives no {'input' if new_in is None else 'output'} price"
    return ""


def _same_as_open_proposal(change: PriceChange) -> bool:
    return PriceChange.objects.filter(
        model=change.model,
        status=PriceChange.Status.PROPOSED,
        new_input_micros_per_m=change.new_input_micros_per_m,
        new_output_micros_per_m=change.new_output_micros_per_m,
        new_cached_input_micros_per_m=change.new_cached_input_micros_per_m,
    ).exists()


@transaction.atomic
def price_change_accept(*, change_id: int) -> PriceChange:
    """Apply a proposed change (an operator's decision)."""
    change = PriceChange.objects.select_for_update().get(pk=change_id)
    if change.status != PriceChange.Status.PROPOSED:
        raise ValueError(f"price change {change_id} is {change.status}, not proposed")
    _apply(change, Price.objects.filter(model=change.model).first())
    change.status, change.decided_at = PriceChange.Status.APPLIED, timezone.now()
    change.save(update_fields=["status", "decided_at"])
    return change


def price_changes_accept_open() -> list[PriceChange]:
    ids = list(PriceChange.objects.filter(status=PriceChange.Status.PROPOSED).order_by("id").values_list("pk", flat=True))
    return [price_change_accept(change_id=i) for i in ids]
