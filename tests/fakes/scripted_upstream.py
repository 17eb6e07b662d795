"""A fake OpenAI-compatible upstream that answers whatever the test scripted: a status, a body
(bytes, sent as given) and headers, for every request. Records the requests' JSON bodies.

    fake = Scripted()
    with ServerThread(fake) as server:
        fake.answer(400, b'{"error": {"message": "..."}}')

No pytest here.
"""

from __future__ import annotations

import orjson

from tests.fakes.base import read_body

__all__ = ["Scripted"]


class Scripted:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answer(200, b"{}")

    def answer(self, status: int, body: bytes, *, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        self.status, self.body = status, body
        self.headers = {"content-type": content_type, **(headers or {})}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        try:
            self.requests.append(orjson.loads(raw) if raw else {})
        except orjson.JSONDecodeError:
            self.requests.append({"raw": raw})
        headers = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})
