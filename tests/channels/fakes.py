"""Fake upstreams for routing tests: real HTTP servers on loopback (tests.fakes.server).

`FlakyOpenAI`: answers chat completions, failing a fixed share of them with OpenAI's 500 body,
decided by its own seeded random draw, so a run is repeatable.

`FakeVendor`: the balance endpoints of several brands and a per-model price document, with
state the test sets:
    GET  /v1/dashboard/billing/subscription   {"hard_limit_usd"}     (One API style)
    GET  /v1/dashboard/billing/usage          {"total_usage"}        (hundredths of a USD)
    GET  /user/balance                        DeepSeek's balance_infos
    GET  /api/v1/credits                      OpenRouter's credits
    GET  /prices.json                         the price document
    POST .../chat/completions                 200, or `chat_status` with OpenAI's error body
"""

from __future__ import annotations

import random
import threading

import orjson


async def _read(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _json(send, status: int, obj) -> None:
    body = orjson.dumps(obj)
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def chat_answer(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


ERRORS = {
    500: {"message": "The server had an error while processing your request.", "type": "server_error", "param": None, "code": None},
    401: {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
}


class FlakyOpenAI:
    def __init__(self, *, name: str = "flaky", failure_rate: float = 0.0, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.reset(name=name, failure_rate=failure_rate, seed=seed)

    def reset(self, *, name: str, failure_rate: float, seed: int) -> None:
        with self._lock:
            self.name = name
            self.failure_rate = failure_rate
            self.rng = random.Random(seed)
            self.calls = 0
            self.failures = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        payload = orjson.loads(await _read(receive) or b"{}")
        with self._lock:
            self.calls += 1
            fails = self.rng.random() < self.failure_rate
            self.failures += fails
        if fails:
            await _json(send, 500, {"error": ERRORS[500]})
        else:
            await _json(send, 200, chat_answer(payload.get("model", ""), f"hello from {self.name}"))


class FakeVendor:
    def __init__(self) -> None:
        self.hard_limit_usd = 100.0
        self.total_usage_cents = 0
        self.deepseek_balance = "10.00"
        self.openrouter = {"total_credits": 20.0, "total_usage": 5.0}
        self.prices: dict = {}
        self.chat_status = 200
        self.chats = 0
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _read(receive)
        self.paths.append(path)
        if method == "POST" and path.endswith("/chat/completions"):
            self.chats += 1
            if self.chat_status != 200:
                await _json(send, self.chat_status, {"error": ERRORS[self.chat_status]})
            else:
                await _json(send, 200, chat_answer(orjson.loads(body).get("model", ""), "ok"))
        elif path.endswith("/dashboard/billing/subscription"):
            await _json(send, 200, {"object": "billing_subscription", "hard_limit_usd": self.hard_limit_usd})
        elif path.endswith("/dashboard/billing/usage"):
            await _json(send, 200, {"object": "list", "total_usage": self.total_usage_cents})
        elif path == "/user/balance":
            await _json(send, 200, {"is_available": True, "balance_infos": [
                {"currency": "CNY", "total_balance": self.deepseek_balance, "granted_balance": "0.00", "topped_up_balance": self.deepseek_balance}]})
        elif path == "/api/v1/credits":
            await _json(send, 200, {"data": self.openrouter})
        elif path == "/prices.json":
            await _json(send, 200, self.prices)
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}"}})
