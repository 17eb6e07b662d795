"""A vendor's account endpoints on top of the fake OpenAI upstream: the balance endpoints of
several brands and a per-model price document, with state the test sets as attributes:

    GET  /v1/dashboard/billing/subscription   {"hard_limit_usd"}     (One API style)
    GET  /v1/dashboard/billing/usage          {"total_usage"}        (hundredths of a USD)
    GET  /user/balance                        DeepSeek's balance_infos (`deepseek_balance`)
    GET  /api/v1/credits                      OpenRouter's credits (`openrouter`)
    GET  /prices.json                         the price document (`prices`)

Chat completions, models and modes are `FakeOpenAI`'s; `reset()` restores the state above too.
No pytest here.
"""

from __future__ import annotations

from tests.fakes.base import Receive, RecordedRequest, Send, send_json
from tests.fakes.openai_upstream import FakeOpenAI

__all__ = ["FakeVendor"]


class FakeVendor(FakeOpenAI):
    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        self._accounts()

    def reset(self) -> None:
        super().reset()
        self._accounts()

    def _accounts(self) -> None:
        self.hard_limit_usd = 100.0
        self.total_usage_cents = 0
        self.deepseek_balance = "10.00"
        self.openrouter = {"total_credits": 20.0, "total_usage": 5.0}
        self.prices: dict = {}

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    async def answer(self, request: RecordedRequest, number: int, settings, receive: Receive, send: Send) -> None:
        path = request.path
        if request.method != "GET":
            await super().answer(request, number, settings, receive, send)
        elif path.endswith("/dashboard/billing/subscription"):
            await send_json(send, 200, {"object": "billing_subscription", "hard_limit_usd": self.hard_limit_usd})
        elif path.endswith("/dashboard/billing/usage"):
            await send_json(send, 200, {"object": "list", "total_usage": self.total_usage_cents})
        elif path == "/user/balance":
            infos = [{"currency": "CNY", "total_balance": self.deepseek_balance, "granted_balance": "0.00", "topped_up_balance": self.deepseek_balance}]
            await send_json(send, 200, {"is_available": True, "balance_infos": infos})
        elif path == "/api/v1/credits":
            await send_json(send, 200, {"data": self.openrouter})
        elif path == "/prices.json":
            await send_json(send, 200, self.prices)
        else:
            await super().answer(request, number, settings, receive, send)
