"""The fake OpenAI upstream, failing a fixed share of its chat completions with OpenAI's 500 body,
decided by its own seeded random draw (one per chat request), so a run is repeatable.

    fake = FlakyOpenAI()
    fake.reset(name="flaky", failure_rate=0.3, seed=7)
    ... fake.calls, fake.failures

Everything else (the answer, usage, modes) is `FakeOpenAI`'s. No pytest here.
"""

from __future__ import annotations

import random

from tests.fakes.base import Receive, RecordedRequest, Send
from tests.fakes.openai_upstream import FakeOpenAI, _send_error

__all__ = ["FlakyOpenAI"]


class FlakyOpenAI(FakeOpenAI):
    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        self._draws(failure_rate=0.0, seed=0)

    def reset(self, *, name: str = "flaky", failure_rate: float = 0.0, seed: int = 0) -> None:
        """Back to the constructor's settings, answering as `name`, with a fresh seeded draw."""
        super().reset()
        self.set_mode("ok", name=name)
        self._draws(failure_rate=failure_rate, seed=seed)

    def _draws(self, *, failure_rate: float, seed: int) -> None:
        with self._lock:
            self.failure_rate = failure_rate
            self.rng = random.Random(seed)
            self.calls = 0
            self.failures = 0

    async def answer(self, request: RecordedRequest, number: int, settings, receive: Receive, send: Send) -> None:
        if request.method == "POST" and request.path.endswith("/chat/completions"):
            with self._lock:
                self.calls += 1
                fails = self.rng.random() < self.failure_rate
                self.failures += fails
            if fails:
                await _send_error(send, "500", settings)
                return
        await super().answer(request, number, settings, receive, send)
