"""What every fake upstream shares: settings and modes, recorded requests, counted disconnects,
and the ASGI plumbing to read a request and send JSON or stream bodies.

A fake subclasses `FakeUpstream`, names its `modes` and its `settings_type` (a dataclass with a
`mode` field), and answers in `answer(request, number, settings, receive, send)`; the wire
format (bodies, error shapes, stream framing) stays in each fake.

No pytest here.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

__all__ = [
    "FakeUpstream",
    "Receive",
    "RecordedRequest",
    "Scope",
    "Send",
    "embedding_values",
    "read_body",
    "send_body",
    "send_json",
    "split_text",
    "wait_or_disconnect",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_port: int | None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def params(self) -> dict[str, str]:
        """The query string as a dict (no percent-decoding: the fakes' values need none)."""
        return dict(part.partition("=")[::2] for part in self.query.split("&") if part)


class FakeUpstream:
    modes: frozenset[str] = frozenset({"ok"})
    settings_type: type  # a dataclass of the fake's settings, `mode` among them

    def __init__(self, mode: str = "ok", **settings: Any) -> None:
        self._check_mode(mode)
        self._initial = self.settings_type(mode=mode, **settings)
        self.settings = self.settings_type(**vars(self._initial))
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # streams whose client went away before the end
        self._lock = threading.Lock()
        self.url = ""  # set by whoever serves it

    # -- control (from the test's thread) --------------------------------------------------

    def set_mode(self, mode: str, **settings: Any) -> None:
        self._check_mode(mode)
        self.settings.mode = mode
        for key, value in settings.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown fake setting {key!r}")
            setattr(self.settings, key, value)

    def reset(self) -> None:
        """Back to the constructor's settings, with nothing recorded."""
        self.settings = self.settings_type(**vars(self._initial))
        with self._lock:
            self.requests.clear()
            self.disconnects = 0

    def wait_for_disconnects(self, count: int, *, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.disconnects < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- the ASGI app (in the server's thread) ---------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        client = scope.get("client")
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
            client_port=client[1] if client else None,
        )
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        # One snapshot per request: a reset() from the test's thread swaps in new settings.
        await self.answer(request, number, self.settings, receive, send)

    async def answer(
        self, request: RecordedRequest, number: int, settings: Any, receive: Receive, send: Send
    ) -> None:
        raise NotImplementedError

    def request_mode(self, headers: dict[str, str], model: str, default: str) -> str:
        """The mode an `X-Fake-Mode` header or a model name ending in `@<mode>` asks, else `default`."""
        mode = headers.get("x-fake-mode")
        if mode in self.modes:
            return mode
        _, at, suffix = model.rpartition("@")
        if at and suffix in self.modes:
            return suffix
        return default

    def count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def _check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"unknown fake mode {mode!r}; one of {sorted(self.modes)}")


def split_text(text: str, count: int) -> list[str]:
    """`text` in `count` nearly equal pieces (fewer if it is shorter), joined back = text."""
    count = max(1, min(count, len(text)))
    return [text[len(text) * i // count : len(text) * (i + 1) // count] for i in range(count)]


def embedding_values(text: str, dims: int) -> list[float]:
    """A made-up embedding: the same text always gives the same values, in [-1, 1]."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def wait_or_disconnect(receive: Receive, seconds: float) -> bool:
    """Sleep `seconds`; True if the client went away meanwhile (stop at once then)."""
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        return False
    return message["type"] == "http.disconnect"


async def send_body(send: Send, body: bytes, *, more_body: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


async def send_json(
    send: Send, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    # Pretty-printed, as OpenAI sends non-streamed answers: lets tests see re-encoding.
    body = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send_body(send, body, more_body=False)
