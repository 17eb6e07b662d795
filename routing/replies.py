"""What a /v1 handler returns; the web layer turns it into an HTTP response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator


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
