"""A lean closed-loop HTTP/1.1 load generator (raw asyncio + httptools), for the benchmark.

Each of ``concurrency`` workers owns one keep-alive connection and sends the same request again as
soon as the previous answer is complete, until the deadline. Per request it records the total
latency and, for streams, the time to the first content chunk (the first body bytes carrying the
first token, ``tok0``, of the fake upstream). A sample of answers is validated in full (JSON body
or SSE events, usage chunk, ``[DONE]``) so that a fast wrong answer is not counted as a fast one.

Kept lean on purpose: the load generator shares the machine's cores with the servers it measures,
so its own CPU per request is reported too.
"""

from __future__ import annotations

import asyncio
import time

import httptools
import orjson

FIRST_TOKEN = b"tok0"
EXPECTED_CHUNKS = 20
EXPECTED_TEXT = "".join(f"tok{i} " for i in range(EXPECTED_CHUNKS))
VALIDATE_SAMPLE = 25  # per worker: the first N answers are checked in full


def build_body(stream: bool, include_usage: bool = True, model: str = "bench-model") -> bytes:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": "Say twenty short tokens."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def build_request(host: str, port: int, path: str, body: bytes, api_key: str | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: tokenhub-bench",
        "Accept: */*",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if api_key:
        lines.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Conn(asyncio.Protocol):
    """One client connection; ``send`` returns a future resolved on the complete response."""

    def __init__(self):
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.fut = None
        self.t_first = 0.0
        self.keep_body = False
        self.body = []
        self.closed = asyncio.get_running_loop().create_future()
        self.keep_alive = True
        self.tail = b""

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if self.fut is not None and not self.fut.done():
                self.fut.set_exception(ConnectionError(f"bad response: {e!r}"))
            if self.transport:
                self.transport.close()

    def send(self, payload: bytes, keep_body: bool):
        self.fut = asyncio.get_running_loop().create_future()
        self.t_first = 0.0
        self.keep_body = keep_body
        self.body = []
        self.tail = b""
        self.transport.write(payload)
        return self.fut

    # httptools callbacks
    def on_body(self, data):
        if not self.t_first:
            # the first token may straddle two reads: look at the joint
            probe = self.tail + data
            if FIRST_TOKEN in probe:
                self.t_first = time.perf_counter()
            else:
                self.tail = probe[-8:]
        if self.keep_body:
            self.body.append(data)

    def on_message_complete(self):
        self.keep_alive = self.parser.should_keep_alive()
        status = self.parser.get_status_code()
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result((status, self.t_first, b"".join(self.body) if self.keep_body else None))


def validate(status: int, body: bytes, stream: bool, include_usage: bool | None) -> str | None:
    """Return None when the answer is what the fake upstream would give, else why not.
    `include_usage=None`: the text only (a peer relay places its usage chunk its own way)."""
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    try:
        if not stream:
            obj = orjson.loads(body)
            text = obj["choices"][0]["message"]["content"]
            if text != EXPECTED_TEXT:
                return f"unexpected content {text[:60]!r}"
            if not (obj.get("usage") or {}).get("completion_tokens"):
                return "no usage in completion"
            return None
        events = []
        for block in body.split(b"\n\n"):
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    events.append(line[5:].strip())
        if not events or events[-1] != b"[DONE]":
            return f"stream does not end with [DONE] (last: {events[-1][:80] if events else None!r})"
        text, usage_chunks = [], 0
        for ev in events[:-1]:
            obj = orjson.loads(ev)
            if "error" in obj:
                return f"error event: {ev[:200]!r}"
            ch = obj.get("choices")
            if ch:
                piece = (ch[0].get("delta") or {}).get("content")
                if piece:
                    text.append(piece)
            elif obj.get("usage"):
                usage_chunks += 1
        if "".join(text) != EXPECTED_TEXT:
            return f"streamed content differs: {''.join(text)[:60]!r}"
        if include_usage is None:
            return None
        if include_usage and usage_chunks != 1:
            return f"expected one usage chunk, got {usage_chunks}"
        if not include_usage and usage_chunks:
            return "usage chunk sent though not asked for"
        return None
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return f"unparsable answer ({e!r}): {body[:200]!r}"


async def _worker(i, host, port, payload, deadline, stream, include_usage, out, errors, samples, conns, ready):
    loop = asyncio.get_running_loop()
    conn = conns[i]
    checked = 0
    lat, ttfc = out
    if ready is not None and i > 0 and (conn is None or conn.transport is None):
        # ramp: connect only once the previous worker has had its first answer, as clients arriving
        # over time would; a burst of connections lets one server worker accept them all
        await ready[i - 1].wait()
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if conn is None or conn.transport is None or not conn.keep_alive:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            try:
                _, conn = await loop.create_connection(_Conn, host, port)
            except OSError as e:
                errors[f"connect: {e.__class__.__name__}"] = errors.get(f"connect: {e.__class__.__name__}", 0) + 1
                await asyncio.sleep(0.05)
                continue
            conns[i] = conn
        t0 = time.perf_counter()
        try:
            status, t_first, body = await conn.send(payload, True)
        except ConnectionError as e:
            key = str(e)[:80]
            errors[key] = errors.get(key, 0) + 1
            conn = conns[i] = None
            continue
        finally:
            if ready is not None:
                ready[i].set()
        t1 = time.perf_counter()
        if status != 200 or checked < VALIDATE_SAMPLE:
            checked += 1
            why = validate(status, body, stream, include_usage)
            if why:
                key = why[:300]
                errors[key] = errors.get(key, 0) + 1
                if len(samples) < 3:
                    samples.append(why)
                continue
        lat.append(t1 - t0)
        if stream:
            ttfc.append((t_first or t1) - t0)
    if ready is not None:
        ready[i].set()


def close_all(conns) -> None:
    for c in conns:
        if c is not None and c.transport is not None:
            c.transport.close()


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


async def run_load(host, port, payload, concurrency, seconds, stream, include_usage=True, conns=None, ramp=True):
    """Closed loop for ``seconds``; returns raw figures (the requests in flight at the deadline
    are waited for and counted, and so is the time they take).

    ``conns``: a list of ``concurrency`` connections (slots may be None) kept open for the next
    call (a warm-up hands its connections to the measured run); closed here when not given.
    ``ramp``: open missing connections one after another, each after the previous one's first
    answer (False: all at once)."""
    own = conns is None
    if own:
        conns = [None] * concurrency
    ready = [asyncio.Event() for _ in range(concurrency)] if ramp else None
    lat, ttfc, errors, samples = [], [], {}, []
    t_start = time.perf_counter()
    deadline = t_start + seconds
    try:
        await asyncio.gather(
            *(
                _worker(i, host, port, payload, deadline, stream, include_usage, (lat, ttfc), errors, samples,
                        conns, ready)
                for i in range(concurrency)
            )
        )
    finally:
        if own:
            close_all(conns)
    elapsed = time.perf_counter() - t_start
    lat.sort()
    ttfc.sort()
    return {
        "requests": len(lat),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "error_samples": samples,
        "elapsed_s": elapsed,
        "rps": len(lat) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p90_ms": percentile(lat, 0.90) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "ttfc_p50_ms": percentile(ttfc, 0.50) * 1000 if stream else None,
        "ttfc_p99_ms": percentile(ttfc, 0.99) * 1000 if stream else None,
    }
