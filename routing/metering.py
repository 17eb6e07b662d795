"""Paying for a request: reserve before sending, settle after. Billing lands in its own issue;
until then the meter records nothing and refuses nothing."""

from __future__ import annotations

from providers.base import Usage

from .errors import InsufficientQuota


class Meter:
    def __init__(self, call, info, request: dict) -> None:
        self.call = call
        self.info = info
        self.request = request
        self.charged_micros = 0
        self.balance_kind = ""
        self.currency = ""
        self._refusals: list[str] = []

    async def prepare(self) -> None:
        pass

    async def reserve(self, route) -> str | None:
        return None

    async def release(self) -> None:
        pass

    async def settle(self, usage: Usage, *, is_estimated: bool) -> None:
        pass

    def refusal_error(self) -> InsufficientQuota:
        return InsufficientQuota("; ".join(self._refusals) or "Insufficient balance.")
