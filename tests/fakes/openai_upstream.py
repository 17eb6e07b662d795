"""A fake OpenAI upstream: a raw ASGI app speaking OpenAI's wire format.

    fake = FakeOpenAI(name="a", chunks=5)
    with ServerThread(fake) as server:      # base_url = server.url + "/v1"
        ...
        fake.set_mode("429", retry_after="7")
        assert fake.requests[-1].json["stream_options"] == {"include_usage": True}

Routes: `POST .../chat/completions` (also Azure's `/openai/deployments/{d}/chat/completions`),
`POST .../embeddings`, `GET .../models`. The answer is always "Hello from fake-<name>" split
into `chunks` pieces; usage reports `prompt_tokens`, `cached_tokens` and one completion token
per piece.

Modes (per instance with `set_mode`, or per request by an `X-Fake-Mode` header or a model
name ending in `@<mode>`):
    ok                 normal answer
    429                429 rate_limit_exceeded with Retry-After (`retry_after`, `retry_after_ms`)
    quota              429 insufficient_quota, as OpenAI sends it for an empty account
    500, 401, 400      OpenAI's error bodies for those statuses
    context_overflow   400 context_length_exceeded
    slow_first_byte    waits `delay_s` before the response headers
    slow_first_chunk   sends headers, then waits `delay_s` before the first chunk
    cut                stream drops the connection after `cut_after` content chunks
    stall              stream goes silent after `cut_after` content chunks for `stall_s`
    stream_error       stream sends an error event after `cut_after` content chunks
    no_usage           never reports usage (ignores stream_options)

No pytest here: the benchmarks reuse it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

__all__ = ["FakeOpenAI", "RecordedRequest", "MODES"]

MODES = frozenset(
    {
        "ok",
        "429",
        "quota",
        "500",
        "401",
        "400",
        "context_overflow",
        "slow_first_byte",
        "slow_first_chunk",
        "cut",
        "stall",
        "stream_error",
        "no_usage",
    }
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_CREATED = 1_700_000_000
_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "429": (
        429,
        {
            "message": "Rate limit reached for requests. Please try again in 1s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "quota": (
        429,
        {
            "message": "You exceeded your current quota, please check your plan and billing "
            "details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        },
    ),
    "500": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "401": (
        401,
        {
            "message": "Incorrect API key provided: sk-fake***********1234. You can find your "
            "API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    ),
    "400": (
        400,
        {
            "message": "Invalid value for 'temperature': must be between 0 and 2.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        },
    ),
    "context_overflow": (
        400,
        {
            "message": "This model's maximum context length is 128000 tokens. However, your "
            "messages resulted in 130017 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
}


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


@dataclass
class _Settings:
    mode: str = "ok"
    name: str = "upstream"
    chunks: int = 20
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")
    api_key: str | None = None  # when set, other keys get the 401 answer
    prompt_tokens: int = 12
    cached_tokens: int = 0
    retry_after: str | None = "1"
    retry_after_ms: str | None = None
    delay_s: float = 1.0
    cut_after: int = 3
    stall_s: float = 30.0
    chunk_delay_s: float = 0.0
    embedding_dims: int = 8


class FakeOpenAI:
    def __init__(self, mode: str = "ok", **settings: Any) -> None:
        _check_mode(mode)
        self._initial = _Settings(mode=mode, **settings)
        self.settings = _Settings(**vars(self._initial))
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # streams whose client went away before the end
        self._lock = threading.Lock()

    # -- control (from the test's thread) --------------------------------------------------

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def text(self) -> str:
        return f"Hello from fake-{self.settings.name}"

    @property
    def pieces(self) -> list[str]:
        return split_text(self.text, self.settings.chunks)

    def set_mode(self, mode: str, **settings: Any) -> None:
        _check_mode(mode)
        self.settings.mode = mode
        for key, value in settings.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown fake setting {key!r}")
            setattr(self.settings, key, value)

    def reset(self) -> None:
        """Back to the constructor's settings, with nothing recorded."""
        self.settings = _Settings(**vars(self._initial))
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
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            client_port=client[1] if client else None,
        )
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        settings = self.settings
        path = request.path
        if settings.api_key is not None and not _has_key(headers, settings.api_key):
            await _send_error(send, "401", settings)
        elif request.method == "POST" and path.endswith("/chat/completions"):
            await self._chat(request, number, settings, receive, send)
        elif request.method == "POST" and path.endswith("/embeddings"):
            await self._embeddings(request, settings, send)
        elif request.method == "GET" and path.endswith("/models"):
            await self._models(settings, send)
        else:
            error = {
                "message": f"Invalid URL ({request.method} {path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            await _send_json(send, 404, {"error": error})

    async def _chat(
        self,
        request: RecordedRequest,
        number: int,
        settings: _Settings,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            await _send_error(send, "400", settings)
            return
        model = str(payload.get("model") or "")
        mode = _request_mode(request.headers, model, settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return
        if mode == "slow_first_byte" and await _wait_or_disconnect(receive, settings.delay_s):
            self._count_disconnect()
            return

        pieces = split_text(self.text, settings.chunks)
        usage = None if mode == "no_usage" else _usage(settings, len(pieces))
        completion_id = f"chatcmpl-fake{number}"
        if not payload.get("stream"):
            await _send_json(
                send,
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": _CREATED,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    **({"usage": usage} if usage is not None else {}),
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake",
                },
            )
            return

        stream_options = payload.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage")) and usage is not None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-request-id", f"req_fake{number}".encode()),
                ],
            }
        )
        if mode == "slow_first_chunk" and await _wait_or_disconnect(receive, settings.delay_s):
            self._count_disconnect()
            return

        def event(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            if include_usage:
                chunk["usage"] = None
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        try:
            first = {"role": "assistant", "content": "", "refusal": None}
            await _send_body(send, event(first, None))
            for sent, piece in enumerate(pieces):
                if sent == settings.cut_after:
                    if mode == "cut":
                        return  # ends the response unfinished: uvicorn drops the connection
                    if mode == "stall":
                        if await _wait_or_disconnect(receive, settings.stall_s):
                            self._count_disconnect()
                            return
                    if mode == "stream_error":
                        error = {"error": _ERRORS["500"][1]}
                        await _send_body(send, b"data: " + orjson.dumps(error) + b"\n\n")
                        await _send_body(send, b"", more_body=False)
                        return
                if settings.chunk_delay_s and await _wait_or_disconnect(
                    receive, settings.chunk_delay_s
                ):
                    self._count_disconnect()
                    return
                await _send_body(send, event({"content": piece}, None))
            await _send_body(send, event({}, "stop"))
            if include_usage:
                chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": usage,
                }
                await _send_body(send, b"data: " + orjson.dumps(chunk) + b"\n\n")
            await _send_body(send, b"data: [DONE]\n\n", more_body=False)
        except OSError:  # uvicorn's ClientDisconnected: the client went away mid-send
            self._count_disconnect()

    async def _embeddings(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        payload = orjson.loads(request.body)
        model = str(payload.get("model") or "")
        mode = _request_mode(request.headers, model, settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return
        inputs = payload.get("input")
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one text, or one list of token ids
        dims = int(payload.get("dimensions") or settings.embedding_dims)
        as_base64 = payload.get("encoding_format") == "base64"
        data = []
        prompt_tokens = 0
        for index, item in enumerate(inputs or []):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            prompt_tokens += max(1, len(text) // 4)
            vector = _vector(text, dims)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        await _send_json(
            send,
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            },
        )

    async def _models(self, settings: _Settings, send: Send) -> None:
        models = [
            {"id": m, "object": "model", "created": _CREATED, "owned_by": f"fake-{settings.name}"}
            for m in settings.models
        ]
        await _send_json(send, 200, {"object": "list", "data": models})

    def _count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1


def split_text(text: str, count: int) -> list[str]:
    """`text` in `count` nearly equal pieces (fewer if it is shorter), joined back = text."""
    count = max(1, min(count, len(text)))
    return [text[len(text) * i // count : len(text) * (i + 1) // count] for i in range(count)]


def _usage(settings: _Settings, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": settings.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": settings.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": settings.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown fake mode {mode!r}; one of {sorted(MODES)}")


def _request_mode(headers: dict[str, str], model: str, default: str) -> str:
    mode = headers.get("x-fake-mode")
    if mode in MODES:
        return mode
    _, at, suffix = model.rpartition("@")
    if at and suffix in MODES:
        return suffix
    return default


def _has_key(headers: dict[str, str], api_key: str) -> bool:
    return headers.get("authorization") == f"Bearer {api_key}" or headers.get("api-key") == api_key


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _wait_or_disconnect(receive: Receive, seconds: float) -> bool:
    """Sleep `seconds`; True if the client went away meanwhile (stop at once then)."""
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        return False
    return message["type"] == "http.disconnect"


async def _send_body(send: Send, body: bytes, *, more_body: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


async def _send_json(
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
    await _send_body(send, body, more_body=False)


async def _send_error(send: Send, mode: str, settings: _Settings) -> None:
    status, error = _ERRORS[mode]
    headers: list[tuple[bytes, bytes]] = []
    if mode == "429":
        if settings.retry_after is not None:
            headers.append((b"retry-after", str(settings.retry_after).encode()))
        if settings.retry_after_ms is not None:
            headers.append((b"retry-after-ms", str(settings.retry_after_ms).encode()))
        headers += [
            (b"x-ratelimit-limit-requests", b"500"),
            (b"x-ratelimit-remaining-requests", b"0"),
            (b"x-ratelimit-reset-requests", b"1s"),
        ]
    await _send_json(send, status, {"error": error}, headers)
