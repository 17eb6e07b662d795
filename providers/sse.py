"""Incremental Server-Sent Events parsing for upstream streams.

`SSEDecoder.feed(bytes)` returns the events completed by those bytes as `(event, data)`
pairs; `iter_sse(byte_iterator)` does the same over an async iterator (httpx
`aiter_bytes()`). Per the SSE spec: lines end with LF, CRLF or CR (also when a CRLF is split
between two reads); an event ends at a blank line; several `data:` lines join with `\\n`; the
event name defaults to `"message"`; comment lines (`: keep-alive`) and `id:`/`retry:` are
dropped (we never reconnect); an event with no data is not dispatched.

One deliberate leniency: at end of stream, complete lines still waiting for their blank line
are dispatched (some servers end with `data: [DONE]\\n`), while a half-received line is
dropped, so a cut in the middle of JSON never reaches the caller as if it were whole.

Bounded: an event that grows past `max_event_bytes` (default `MAX_EVENT_BYTES`) without its
blank line raises a TRANSIENT `ProviderError`; the buffer never holds more than that.

Hot path: the common OpenAI event (`data: {...}\\n\\n`, one line) costs one `find` and one
slice; the general line split only runs for multi-line or named events.
"""

from __future__ import annotations

from typing import AsyncIterable, AsyncIterator

from providers.base import ErrorKind, ProviderError

__all__ = ["MAX_EVENT_BYTES", "SSEDecoder", "iter_sse"]

MAX_EVENT_BYTES = 8 * 1024 * 1024  # one event still waiting for its blank line; beyond: the upstream is broken

SSEEvent = tuple[str, bytes]

_DEFAULT_EVENT = "message"
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    __slots__ = ("_buf", "_scan_from", "_pending_cr", "_at_start", "_max_event_bytes")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._buf = b""  # bytes after the last complete event; never contains b"\n\n"
        self._scan_from = 0
        self._pending_cr = False  # a trailing CR may be the first half of a CRLF
        self._at_start = True

    def feed(self, data: bytes) -> list[SSEEvent]:
        if self._at_start:
            if not data:
                return []
            self._at_start = False
            if data.startswith(_BOM):
                data = data[3:]
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if b"\r" in data:
            if data.endswith(b"\r"):
                data = data[:-1]
                self._pending_cr = True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        buf = self._buf + data if self._buf else data
        events: list[SSEEvent] = []
        start = 0
        pos = buf.find(b"\n\n", self._scan_from)
        while pos != -1:
            if pos > start:
                event = _parse_block(buf, start, pos)
                if event is not None:
                    events.append(event)
            start = pos + 2
            pos = buf.find(b"\n\n", start)
        rest = buf[start:] if start else buf
        if len(rest) > self._max_event_bytes:
            raise ProviderError(
                ErrorKind.TRANSIENT, f"upstream stream event is larger than {self._max_event_bytes} bytes", status=502
            )
        self._buf = rest
        # A separator may straddle the boundary: rescan the last byte we already saw.
        self._scan_from = len(rest) - 1 if rest else 0
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch complete lines that lacked their blank line."""
        buf = self._buf + b"\n" if self._pending_cr else self._buf
        self._buf, self._scan_from, self._pending_cr = b"", 0, False
        if not buf.endswith(b"\n"):
            return []  # empty, or an unfinished line: the stream was cut
        event = _parse_block(buf, 0, len(buf) - 1)
        return [event] if event is not None else []


def _parse_block(buf: bytes, start: int, end: int) -> SSEEvent | None:
    """Parse the lines in buf[start:end] (no blank line inside) into one event."""
    if buf.startswith(b"data:", start) and buf.find(b"\n", start, end) == -1:
        value_at = start + 5
        if value_at < end and buf[value_at] == 0x20:
            value_at += 1
        return _DEFAULT_EVENT, buf[value_at:end]

    name = _DEFAULT_EVENT
    data_lines: list[bytes] = []
    for line in buf[start:end].split(b"\n"):
        if not line or line[0] == 0x3A:  # blank or ":" comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace") or _DEFAULT_EVENT
    if not data_lines:
        return None
    return name, data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEEvent]:
    """Events from an async byte iterator; closing this closes the source too."""
    source = aiter(chunks)
    decoder = SSEDecoder()
    try:
        async for chunk in source:
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.flush():
            yield event
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
