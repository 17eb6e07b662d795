"""Paying for one request: price it, hold the most it can cost in the balance its route bills,
charge what it really cost. The money rules themselves live in `billing.services`.

A route of class `official` bills the tenant's Credit, `routed` its Wallet; when failover moves
to a route billed from the other balance, the hold moves with it. Failed attempts cost nothing.

Bounds (docs/billing.md):
- the hold is the worst case: the counted prompt (with `context_tokens`, the conversation an
  upstream holds for a passed-through `previous_response_id`) plus `choices` x `output_limit` completion
  tokens, where `choices` is the larger of `n` and `best_of` and `output_limit` the largest
  output-limit field the client set (else the model's max output, else 4,096); that limit is
  what the upstream is sent (`output_limit_write`);
- the bill is what was delivered, bounded by what could have been: completion tokens above
  `choices` x `output_limit` and prompt tokens above USAGE_PROMPT_SLACK_RATIO x our count +
  USAGE_PROMPT_SLACK_TOKENS are not billed; the difference is the upstream's discrepancy,
  recorded in the request log;
- the charge never exceeds the hold (billing clamps it there too).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings

from billing import selectors as billing_selectors
from billing import services as billing
from billing.models import BalanceKind
from billing.pricing import PriceSnapshot, charge_micros, list_cost_micros
from billing.ratecard import ratecard_aget
from common.db import run_db
from providers.base import NATIVE_ANTHROPIC, Usage

from . import counting
from .errors import InsufficientQuota, ModelNotPriced

log = logging.getLogger(__name__)


# Every field a client may limit the output with: the largest one is the worst case.
OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Fields asking for several answers in one request: each may be `output_limit` long.
CHOICES_FIELDS = ("n", "best_of")


def _positive_int(value) -> int | None:
    return value if type(value) is int and value >= 1 else None


def output_limit_of(request: dict) -> int | None:
    """The largest output limit the client set, or None when it set none."""
    limits = [v for v in (_positive_int(request.get(name)) for name in OUTPUT_LIMIT_FIELDS) if v is not None]
    return max(limits) if limits else None


def choices_of(request: dict) -> int:
    """How many answers the upstream may generate (and bill) for this request."""
    return max([1] + [v for v in (_positive_int(request.get(name)) for name in CHOICES_FIELDS) if v is not None])


def output_limit_write(request: dict, limit: int, *, field: str) -> None:
    """Tell the upstream the limit that was held, in the one field this endpoint's protocol
    honours (adapters and brands translate it: Anthropic `max_tokens`, Gemini
    `maxOutputTokens`, vLLM/Mistral/Ollama `max_tokens`); the other limit fields are dropped so
    no upstream can honour a larger one."""
    for name in OUTPUT_LIMIT_FIELDS:
        request.pop(name, None)
    request[field] = limit
    native = request.get(NATIVE_ANTHROPIC)
    if isinstance(native, dict) and isinstance(native.get("body"), dict):
        native["body"]["max_tokens"] = limit  # /v1/messages to an Anthropic upstream: sent as is

BILLING_TO_BALANCE = {"official": BalanceKind.CREDIT, "routed": BalanceKind.WALLET}
BALANCE_CURRENCY = billing.DEFAULT_CURRENCY


class Meter:
    def __init__(
        self, call, info, request: dict, *, prompt_tokens: int | None = None, max_output_tokens: int | None = None, context_tokens: int = 0
    ) -> None:
        self.call = call
        # prompt tokens the upstream keeps from earlier turns (a passed-through
        # previous_response_id): billed by it as input, invisible to our count of the request
        self.context_tokens = context_tokens
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
        self.choices = choices_of(request)
        self.output_limit = 0  # completion tokens per choice the hold covers (set by prepare)
        self.discrepancy = ""  # what the upstream reported beyond what could be billed
        self.unbilled_micros = 0  # the charge it would have made, minus what was charged
        self._reported: Usage | None = None  # the upstream's usage when it lay beyond the bounds
        self.lease_due = 0.0  # monotonic time the hold's lease is next renewed (streams)

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
        if self._max_output_tokens is None:
            self._max_output_tokens = output_limit_of(self.request) or self.info.max_output or settings.DEFAULT_MAX_OUTPUT_TOKENS
        self.output_limit = self._max_output_tokens
        if price.is_free:
            return
        if self._prompt_tokens is None:
            if self.call.identity.body_size > counting.INLINE_MAX_BYTES and not await run_db(
                billing_selectors.balance_available_any, tenant_id=self.call.identity.policy.tenant_id
            ):
                # Nothing left to hold against: refused before the tokenizer spends any time on it.
                raise InsufficientQuota("Insufficient balance: every balance of this account is used up or reserved.")
            counted = await counting.prompt_tokens_acount(self.request, body_size=self.call.identity.body_size)
            self._prompt_tokens = counted + self.context_tokens
        self.call.outcome.prompt_tokens = self._prompt_tokens

    def _quote(self, route, usage: Usage) -> tuple[int, int, str, str]:
        """(charge in the balance's micro-units, cap amount in micro-USD, balance kind, currency)."""
        kind = BILLING_TO_BALANCE[route.billing]
        currency = BALANCE_CURRENCY[kind]
        card = self._card
        rate = card.rate(currency)
        if rate is None:
            raise ModelNotPriced(
                f"No exchange rate is set for {currency}, so routes billed in it cannot be priced; "
                "an operator must set one (manage.py set_exchange_rate)."
            )
        list_micros = self._list_micros(usage)
        group_ratio = card.group_ratio(self.call.identity.policy.tenant_group)
        discount = Decimal(route.discount_ratio)
        charge = charge_micros(list_micros, group_ratio=group_ratio, discount_ratio=discount, units_per_usd=rate)
        cap = charge_micros(list_micros, group_ratio=group_ratio, discount_ratio=discount, units_per_usd=Decimal(1))
        return charge, cap, kind, currency

    def _list_micros(self, usage) -> int:
        """The list price of `usage` in micro-USD (the media meter prices other units)."""
        return list_cost_micros(
            self.price,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_creation_tokens,
        )

    def _worst_usage(self):
        return Usage(prompt_tokens=self._prompt_tokens, completion_tokens=self.choices * self._max_output_tokens)

    def _floor_usage(self):
        return Usage(prompt_tokens=self._prompt_tokens)

    def _note(self, usage, is_estimated: bool) -> str:
        return f"{self.info.public_id}: {usage.prompt_tokens} in, {usage.completion_tokens} out" + (" (counted)" if is_estimated else "")

    async def reserve(self, route) -> str | None:
        """Hold the most this request can cost on `route`'s balance. Returns why not, or None."""
        if not self.is_billed:
            return None
        if (
            self._hold_route is not None
            and self._hold_route.billing == route.billing
            and self._hold_route.discount_ratio >= route.discount_ratio
        ):
            return None  # the hold we have covers this route too
        worst = self._worst_usage()
        floor_usage = self._floor_usage()
        amount, cap_amount, kind, currency = self._quote(route, worst)
        ceiling = self.call.admission.directives.max_cost_micros
        if ceiling is not None and cap_amount > ceiling:
            reason = (
                f"On this route the request could cost up to ${cap_amount / 1_000_000:.6f}, more than its "
                f"max_cost directive of ${ceiling / 1_000_000:.6f}; lower max_tokens or raise max_cost."
            )
            self._refusals.append(reason)
            return reason
        floor, _, _, _ = self._quote(route, floor_usage)
        await self.release()
        policy = self.call.identity.policy
        hold_key = self.call.identity.request_id if self._switches == 0 else f"{self.call.identity.request_id}:{self._switches}"
        self._switches += 1
        try:
            await billing.ahold_open(
                hold_key=hold_key,
                request_id=self.call.identity.request_id,
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

    def _balance(self) -> tuple[int, str]:
        """The balance the hold is on: its settle or release goes in a batch of that balance only."""
        return self.call.identity.policy.tenant_id, self.balance_kind

    async def release(self) -> None:
        if self._hold_key is not None:
            hold_key, self._hold_key, self._hold_route = self._hold_key, None, None
            await billing.ahold_release(hold_key=hold_key, balance=self._balance())

    def billable(self, reported: Usage | None, counted: Usage, *, is_cut: bool) -> tuple[Usage, bool]:
        """What to bill: (usage, is_estimated). The upstream's report when it gave a usable one
        (on a cut or abandoned stream, each count the larger of the report and what we counted
        delivered), bounded by what the request could have cost; what lies beyond the bounds
        is noted in `discrepancy`."""
        if reported is None:
            usage, is_estimated = counted, True
        elif is_cut:
            usage = Usage(
                max(reported.prompt_tokens, counted.prompt_tokens),
                max(reported.completion_tokens, counted.completion_tokens),
                min(reported.cached_tokens, max(reported.prompt_tokens, counted.prompt_tokens)),
                reported.cache_creation_tokens,
            )
            is_estimated = usage.completion_tokens != reported.completion_tokens or usage.prompt_tokens != reported.prompt_tokens
        else:
            usage, is_estimated = reported, False
        notes = []
        max_completion = self.choices * self.output_limit if self.output_limit else None
        if max_completion is not None and usage.completion_tokens > max_completion:
            notes.append(f"completion {usage.completion_tokens} > limit sent {max_completion}")
        max_prompt = None
        if self._prompt_tokens is not None:
            max_prompt = int(self._prompt_tokens * settings.USAGE_PROMPT_SLACK_RATIO) + settings.USAGE_PROMPT_SLACK_TOKENS
            if usage.prompt_tokens > max_prompt:
                notes.append(f"prompt {usage.prompt_tokens} > {max_prompt} (counted {self._prompt_tokens})")
        if notes:
            self.discrepancy = "; ".join(notes)
            self._reported = usage
            prompt = min(usage.prompt_tokens, max_prompt) if max_prompt is not None else usage.prompt_tokens
            usage = Usage(
                prompt,
                min(usage.completion_tokens, max_completion) if max_completion is not None else usage.completion_tokens,
                min(usage.cached_tokens, prompt),
                min(usage.cache_creation_tokens, prompt - min(usage.cached_tokens, prompt)),
            )
        return usage, is_estimated

    async def settle(self, usage: Usage, *, is_estimated: bool) -> None:
        """Charge what the request really cost, once, at most what was held. The part of a
        bill the hold cannot cover is not charged: it is noted as `unbilled_micros`."""
        if self._hold_key is None:
            return
        # priced on the route that answered: the hold may have been made for a costlier one
        route = self.call.attempts.route or self._hold_route
        charge, _, _, _ = self._quote(route, usage)
        would_charge = self._quote(route, self._reported)[0] if self._reported is not None else charge
        note = self._note(usage, is_estimated)
        hold = await billing.ahold_settle(hold_key=self._hold_key, charge_micros=charge, note=note, balance=self._balance())
        self._hold_key = None
        if hold is not None:
            self.charged_micros = hold.charged_micros
            self.unbilled_micros = max(0, would_charge - hold.charged_micros)
            if hold.charged_micros < charge and not self.discrepancy:
                self.discrepancy = f"cost {charge} above what was held; {hold.charged_micros} charged"

    async def renew(self) -> None:
        """Renew the hold's lease: reconciliation leaves a hold whose request still runs."""
        if self._hold_key is not None:
            await run_db(billing.hold_renew, hold_key=self._hold_key)

    def refusal_error(self) -> InsufficientQuota:
        return InsufficientQuota(" ".join(dict.fromkeys(self._refusals)) or "Insufficient balance.")
