"""What a /v1 handler returns (the web layer turns it into an HTTP response), and the reading of
the journey's own chat stream that every translation back into another protocol shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator

import orjson


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass(slots=True)
class StreamReply:
    chunks: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    media_type: str = "text/event-stream"


BROKEN = "The upstream stream broke."


async def chat_stream_items(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, object]]:
    """The journey's chat stream, item by item: ("chunk", the chat chunk object), ("event", the
    bytes of an Anthropic upstream's own event, passed through), ("error", the message of the
    error event that ends a broken stream) or ("done", None). The stream is closed at the end,
    or when the reader stops early (a client that went away)."""
    try:
        async for data in chunks:
            if data.startswith(b"event:"):
                yield "event", data
                continue
            payload = data[6:].strip()  # "data: ...\n\n"
            if payload == b"[DONE]":
                yield "done", None
                return
            obj = orjson.loads(payload)
            if "error" in obj and "choices" not in obj:
                error = obj["error"] if isinstance(obj["error"], dict) else {}
                yield "error", str(error.get("message") or BROKEN)
                return
            yield "chunk", obj
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
