"""A deliberately lean fake OpenAI upstream for the benchmark.

Raw asyncio.Protocol + httptools request parser on uvloop, HTTP/1.1 keep-alive, every response
built once at start-up. It answers:

* ``POST /v1/chat/completions`` -- a fixed ``chat.completion`` with ``usage``; with
  ``"stream": true`` an SSE stream of 20 content chunks, a finish chunk, a usage chunk
  (``choices: []``) when ``stream_options.include_usage`` is true, then ``data: [DONE]``.
* ``GET /v1/models`` -- one model (some relays probe it).
* ``GET /_bench/stats`` -- ``{"connections": N, "requests": N}`` served so far (for the bench:
  a relay that does not pool its upstream connections shows here).
* anything else -- 404 in OpenAI's error shape.

Run: ``python bench/fake_upstream.py [--host 127.0.0.1] [--port 0] [--chunk-interval-ms 0]``.
It prints ``LISTENING <port>`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import httptools
import orjson

MODEL = "bench-model"
CONTENT_CHUNKS = 20
PROMPT_TOKENS = 12
COMPLETION_TOKENS = CONTENT_CHUNKS
CREATED = 1_700_000_000
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}
PIECES = [f"tok{i} " for i in range(CONTENT_CHUNKS)]
FULL_TEXT = "".join(PIECES)


def _response(status: str, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\n"
        b"content-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"x-request-id: fake\r\n" + extra + b"\r\n" + body
    )


def _sse_chunk(obj) -> bytes:
    event = b"data: " + (obj if isinstance(obj, bytes) else orjson.dumps(obj)) + b"\n\n"
    return b"%x\r\n" % len(event) + event + b"\r\n"


def build_responses():
    completion = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": FULL_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    plain = _response("200 OK", b"application/json", orjson.dumps(completion))

    def chunk(delta, finish=None, usage_null=True, choices=True):
        obj = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if choices
            else [],
        }
        return obj

    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"content-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n"
        b"x-request-id: fake\r\n\r\n"
    )

    def events(include_usage: bool) -> list[bytes]:
        out = []
        for i, piece in enumerate(PIECES):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            obj = chunk(delta)
            if include_usage:
                obj["usage"] = None
            out.append(_sse_chunk(obj))
        fin = chunk({}, finish="stop")
        if include_usage:
            fin["usage"] = None
        out.append(_sse_chunk(fin))
        if include_usage:
            u = chunk(None, choices=False)
            u["usage"] = USAGE
            out.append(_sse_chunk(u))
        out.append(_sse_chunk(b"[DONE]") + b"0\r\n\r\n")
        return out

    models = _response(
        "200 OK",
        b"application/json",
        orjson.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}),
    )
    not_found = _response(
        "404 Not Found",
        b"application/json",
        orjson.dumps({"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": "not_found"}}),
    )
    bad = _response(
        "400 Bad Request",
        b"application/json",
        orjson.dumps({"error": {"message": "invalid JSON body", "type": "invalid_request_error", "param": None, "code": None}}),
    )
    return {
        "plain": plain,
        "stream_head": head,
        "stream_usage": events(True),
        "stream_nousage": events(False),
        "models": models,
        "not_found": not_found,
        "bad": bad,
    }


R = build_responses()
STREAM_USAGE_ONESHOT = R["stream_head"] + b"".join(R["stream_usage"])
STREAM_NOUSAGE_ONESHOT = R["stream_head"] + b"".join(R["stream_nousage"])


STATS = {"connections": 0, "requests": 0}


class FakeUpstream(asyncio.Protocol):
    __slots__ = ("transport", "parser", "url", "method", "body", "interval", "busy", "keep_alive", "loop")

    def __init__(self, interval: float):
        self.interval = interval
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []
        self.busy = False
        self.loop = asyncio.get_event_loop()

    # -- asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        STATS["connections"] += 1

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.close()
        except httptools.HttpParserError:
            self.transport.write(R["bad"])
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None

    # -- httptools callbacks
    def on_message_begin(self):
        self.url = b""
        self.body = []

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        keep = self.parser.should_keep_alive()
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        t = self.transport
        if t is None:
            return
        STATS["requests"] += 1
        if method == b"POST" and path.endswith(b"/chat/completions"):
            try:
                req = orjson.loads(b"".join(self.body)) if self.body else {}
            except orjson.JSONDecodeError:
                t.write(R["bad"])
            else:
                if req.get("stream"):
                    so = req.get("stream_options") or {}
                    usage = bool(so.get("include_usage"))
                    if self.interval > 0:
                        self._drip(R["stream_usage"] if usage else R["stream_nousage"], keep)
                        return
                    t.write(STREAM_USAGE_ONESHOT if usage else STREAM_NOUSAGE_ONESHOT)
                else:
                    t.write(R["plain"])
        elif method == b"GET" and path == b"/_bench/stats":
            t.write(_response("200 OK", b"application/json", orjson.dumps(STATS)))
        elif method == b"GET" and path.endswith(b"/models"):
            t.write(R["models"])
        else:
            t.write(R["not_found"])
        if not keep:
            t.close()

    def _drip(self, events, keep):
        t = self.transport
        t.write(R["stream_head"])
        it = iter(events)

        def step():
            if self.transport is None:
                return
            ev = next(it, None)
            if ev is None:
                if not keep:
                    self.transport.close()
                return
            self.transport.write(ev)
            self.loop.call_later(self.interval, step)

        step()


async def serve(host: str, port: int, interval: float, ready_fd=None):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeUpstream(interval), host, port, backlog=2048, reuse_address=True)
    real_port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"LISTENING {real_port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunk-interval-ms", type=float, default=0.0, help="gap between stream chunks (0: send at once)")
    a = p.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    runner(serve(a.host, a.port, a.chunk_interval_ms / 1000.0))


if __name__ == "__main__":
    main()
