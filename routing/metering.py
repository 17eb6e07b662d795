"""Paying for one request: price it, hold the most it can cost in the balance its route bills,
charge what it really cost. The money rules themselves live in `billing.services`.

A route of class `official` bills the tenant's Credit, `routed` its Wallet; when failover moves
to a route billed from the other balance, the hold moves with it. Failed attempts cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from django.conf import settings

from billing import services as billing
from billing.models import BalanceKind
from billing.pricing import PriceSnapshot, charge_micros, list_cost_micros
from billing.ratecard import ratecard_aget
from providers import tokens
from providers.base import Usage
from common.db import run_db

from .errors import InsufficientQuota, ModelNotPriced

log = logging.getLogger(__name__)

LONG_BODY_BYTES = 64 * 1024

BILLING_TO_BALANCE = {"official": BalanceKind.CREDIT, "routed": BalanceKind.WALLET}
BALANCE_CURRENCY = billing.DEFAULT_CURRENCY


class Meter:
    def __init__(self, call, info, request: dict, *, prompt_tokens: int | None = None, max_output_tokens: int | None = None) -> None:
        self.call = call
        self.info = info
        self.request = request
        self.charged_micros = 0
        self.balance_kind = ""
        self.currency = ""
        self.price: PriceSnapshot | None = None
        self._prompt_tokens = prompt_tokens
        self._max_output_tokens = max_output_tokens
        self._card = None
        self._hold_key: str | None = None
        self._hold_route = None
        self._switches = 0
        self._refusals: list[str] = []

    @property
    def is_billed(self) -> bool:
        return self.price is not None and not self.price.is_free

    async def prepare(self) -> None:
        """Find the price; a model without one (and not marked free) is refused before anything is sent."""
        self._card = card = await ratecard_aget()
        price = card.prices.get(self.info.public_id)
        if price is None:
            raise ModelNotPriced(
                f"The model '{self.info.public_id}' has no price yet, so TokenHub will not serve it. "
                "An operator must set one (manage.py set_price) or mark it free."
            )
        self.price = price
        if price.is_free:
            return
        if self._prompt_tokens is None:
            if self.call.body_size > LONG_BODY_BYTES:
                # counting takes about 10 ms per 100k tokens: off the event loop, where streams wait
                self._prompt_tokens = await asyncio.to_thread(tokens.estimate_request_prompt_tokens, self.request)
            else:
                self._prompt_tokens = tokens.estimate_request_prompt_tokens(self.request)
        self.call.prompt_tokens = self._prompt_tokens
        if self._max_output_tokens is None:
            self._max_output_tokens = (
                self.request.get("max_completion_tokens")
                or self.request.get("max_tokens")
                or self.info.max_output
                or settings.DEFAULT_MAX_OUTPUT_TOKENS
            )

    def _quote(self, route, usage: Usage) -> tuple[int, int, str, str]:
        """(charge in the balance's micro-units, cap amount in micro-USD, balance kind, currency)."""
        kind = BILLING_TO_BALANCE[route.billing]
        currency = BALANCE_CURRENCY[kind]
        card = self._card
        rate = card.rate(currency)
        if rate is None:
            raise ModelNotPriced(f"No exchange rate is set for {currency}, so routes billed in it cannot be priced; an operator must set one (manage.py set_exchange_rate).")
        list_micros = list_cost_micros(
            self.price,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_creation_tokens,
        )
        group_ratio = card.group_ratio(self.call.policy.tenant_group)
        discount = Decimal(route.discount_ratio)
        charge = charge_micros(list_micros, group_ratio=group_ratio, discount_ratio=discount, units_per_usd=rate)
        cap = charge_micros(list_micros, group_ratio=group_ratio, discount_ratio=discount, units_per_usd=Decimal(1))
        return charge, cap, kind, currency

    async def reserve(self, route) -> str | None:
        """Hold the most this request can cost on `route`'s balance. Returns why not, or None."""
        if not self.is_billed:
            return None
        if self._hold_route is not None and self._hold_route.billing == route.billing and self._hold_route.discount_ratio >= route.discount_ratio:
            return None  # the hold we have covers this route too
        worst = Usage(prompt_tokens=self._prompt_tokens, completion_tokens=self._max_output_tokens)
        floor_usage = Usage(prompt_tokens=self._prompt_tokens)
        amount, cap_amount, kind, currency = self._quote(route, worst)
        floor, _, _, _ = self._quote(route, floor_usage)
        await self.release()
        policy = self.call.policy
        hold_key = self.call.request_id if self._switches == 0 else f"{self.call.request_id}:{self._switches}"
        self._switches += 1
        try:
            await run_db(billing.hold_open, 
                hold_key=hold_key,
                request_id=self.call.request_id,
                tenant_id=policy.tenant_id,
                kind=kind,
                model=self.info.public_id,
                amount_micros=amount,
                floor_micros=floor,
                cap_amount_micros=cap_amount,
                caps=billing.CapPolicy(policy.key_id, policy.daily_cap_micros, policy.monthly_cap_micros, policy.tenant_timezone),
            )
        except billing.Refused as refusal:
            self._refusals.append(str(refusal))
            return str(refusal)
        self._hold_key, self._hold_route = hold_key, route
        self.balance_kind, self.currency = kind, currency
        return None

    async def release(self) -> None:
        if self._hold_key is not None:
            hold_key, self._hold_key, self._hold_route = self._hold_key, None, None
            await run_db(billing.hold_release, hold_key=hold_key)

    async def settle(self, usage: Usage, *, is_estimated: bool) -> None:
        """Charge what the request really cost, once."""
        if self._hold_key is None:
            return
        # priced on the route that answered: the hold may have been made for a costlier one
        charge, _, _, _ = self._quote(self.call.route or self._hold_route, usage)
        note = f"{self.info.public_id}: {usage.prompt_tokens} in, {usage.completion_tokens} out" + (" (counted)" if is_estimated else "")
        hold = await run_db(billing.hold_settle, hold_key=self._hold_key, charge_micros=charge, note=note)
        self._hold_key = None
        if hold is not None:
            self.charged_micros = hold.charged_micros

    def refusal_error(self) -> InsufficientQuota:
        return InsufficientQuota(" ".join(dict.fromkeys(self._refusals)) or "Insufficient balance.")
