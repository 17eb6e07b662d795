"""A fake OpenAI upstream: a raw ASGI app speaking OpenAI's wire format.

    fake = FakeOpenAI(name="a", chunks=5)
    with ServerThread(fake) as server:      # base_url = server.url + "/v1"
        ...
        fake.set_mode("429", retry_after="7")
        assert fake.requests[-1].json["stream_options"] == {"include_usage": True}

Routes: `POST .../chat/completions` (also Azure's `/openai/deployments/{d}/chat/completions`),
`POST .../responses` (the Responses API, see `_ResponsesRoute`), `POST .../embeddings`,
`GET .../models`, and the media endpoints: `POST .../images/generations`
(`n` images as b64_json or url), `.../moderations` (one result per input), `.../audio/speech`
(`SPEECH_AUDIO`, as audio/mpeg or the asked format's type), `.../audio/transcriptions` (a
multipart upload; answers `TRANSCRIPT` with a `duration` usage of `audio_seconds`, as text for
`response_format=text`). The answer is always "Hello from fake-<name>" split
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

Settings `usage` (an object sent as the usage report, as is) and `usage_first` (streams: the
report also rides on the first chunk) make a lying or broken upstream.

Per upstream key: `key_modes={"sk-b": "429"}` answers requests bearing that key in that mode (one
key of an account rate limited or revoked, the others fine); an `X-Fake-Mode` header or a model
suffix still wins. `keys_seen()` counts the requests by the key they bore.

No pytest here: the benchmarks reuse it.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fakes.base import (
    FakeUpstream,
    Receive,
    RecordedRequest,
    Send,
    embedding_values,
    send_body,
    send_json,
    split_text,
    wait_or_disconnect,
)

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
    usage: Any = None  # when set, sent as the usage object as is (a lying or broken upstream)
    usage_first: bool = False  # streams: the usage object rides on the first chunk too
    images: int | None = None  # when set, this many images whatever `n` asked (a lying upstream)
    audio_seconds: float | None = 3.0  # transcriptions: the duration reported (None: no report)
    key_modes: dict[str, str] | None = None  # upstream key -> the mode its requests get


SPEECH_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00fake-mpeg-frames" * 4
TRANSCRIPT = "Hello from the fake transcriber."
_AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}


def _json_payload(request: RecordedRequest) -> dict | None:
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def form_fields(request: RecordedRequest) -> dict[str, Any]:
    """A multipart request's parts by name: text fields as str, files as (filename, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + request.headers.get("content-type", "").encode() + b"\r\n\r\n" + request.body
    )
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[name] = (part.get_filename(), payload) if part.get_filename() else payload.decode()
    return fields


class _MediaRoutes:
    """The media endpoints of FakeOpenAI (a mixin: reads `request_mode`)."""

    async def _media_payload(self, request: RecordedRequest, settings: _Settings, send: Send) -> dict | None:
        payload = _json_payload(request)
        if payload is None:
            await _send_error(send, "400", settings)
            return None
        mode = self.request_mode(request.headers, str(payload.get("model") or ""), settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return None
        return payload

    async def _images(self, request: RecordedRequest, number: int, settings: _Settings, send: Send) -> None:
        payload = await self._media_payload(request, settings, send)
        if payload is None:
            return
        count = settings.images if settings.images is not None else int(payload.get("n") or 1)
        if payload.get("response_format") == "b64_json":
            data = [{"b64_json": base64.b64encode(f"png-{number}-{i}".encode()).decode()} for i in range(count)]
        else:
            data = [{"url": f"https://images.fake.invalid/{number}/{i}.png"} for i in range(count)]
        await send_json(send, 200, {"created": _CREATED, "data": data})

    async def _moderations(self, request: RecordedRequest, number: int, settings: _Settings, send: Send) -> None:
        payload = await self._media_payload(request, settings, send)
        if payload is None:
            return
        inputs = payload.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        result = {"flagged": False, "categories": {"violence": False}, "category_scores": {"violence": 0.001}}
        await send_json(send, 200, {"id": f"modr-fake{number}", "model": payload.get("model"), "results": [result] * count})

    async def _speech(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        payload = await self._media_payload(request, settings, send)
        if payload is None:
            return
        media_type = _AUDIO_TYPES.get(str(payload.get("response_format") or "mp3"), "audio/mpeg")
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", media_type.encode()), (b"content-length", str(len(SPEECH_AUDIO)).encode())]})
        await send_body(send, SPEECH_AUDIO, more_body=False)

    async def _transcriptions(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        fields = form_fields(request)
        if not isinstance(fields.get("file"), tuple) or not isinstance(fields.get("model"), str):
            await _send_error(send, "400", settings)
            return
        mode = self.request_mode(request.headers, fields["model"], settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return
        if fields.get("response_format") == "text":
            body = TRANSCRIPT.encode()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
            await send_body(send, body, more_body=False)
            return
        answer: dict[str, Any] = {"text": TRANSCRIPT}
        if settings.audio_seconds is not None:
            answer["usage"] = {"type": "duration", "seconds": settings.audio_seconds}
        await send_json(send, 200, answer)


TOOL_ARGUMENTS = '{"city":"Paris"}'


class _ResponsesRoute:
    """`POST .../responses` of FakeOpenAI (a mixin: reads `text`, `request_mode`).

    The answer is the fake's text (or, with function `tools` and `tool_choice` not "none",
    a `function_call` of the first tool with TOOL_ARGUMENTS; after a `function_call_output`,
    "The tool answered: <output>"), whole or as OpenAI streams it: `response.created`,
    `response.in_progress`, `response.output_item.added`, `response.content_part.added`,
    `response.output_text.delta` per piece, `.done`s, `response.completed` with usage
    (`response.incomplete` when `max_output_tokens` is below the pieces: cut there). Ids are
    `resp_fake-<name>-<n>`; a response made with `store` not false is kept, and a
    `previous_response_id` this fake did not make is OpenAI's 400. Modes as for chat
    (`stream_error` sends an `error` event); `usage` replaces the usage object as is.
    """

    async def _responses(self, request: RecordedRequest, number: int, settings: _Settings, receive: Receive, send: Send) -> None:
        payload = _json_payload(request)
        if payload is None:
            await _send_error(send, "400", settings)
            return
        model = str(payload.get("model") or "")
        mode = self.request_mode(request.headers, model, settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return
        previous = payload.get("previous_response_id")
        if previous is not None and previous not in self.responses_made:
            error = {"message": f"Previous response with id '{previous}' not found.", "type": "invalid_request_error",
                     "param": "previous_response_id", "code": "previous_response_not_found"}
            await send_json(send, 400, {"error": error})
            return
        if mode == "slow_first_byte" and await wait_or_disconnect(receive, settings.delay_s):
            self.count_disconnect()
            return
        response_id = f"resp_fake-{settings.name}-{number}"
        items = payload.get("input") if isinstance(payload.get("input"), list) else []
        last = items[-1] if items and isinstance(items[-1], dict) else {}
        tools = [t for t in payload.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
        call = None
        if last.get("type") == "function_call_output":
            text = f"The tool answered: {last.get('output')}"
        elif tools and payload.get("tool_choice") != "none":
            text = ""
            call = {"type": "function_call", "id": f"fc_fake{number}", "call_id": f"call_fake{number}", "name": tools[0].get("name"),
                    "arguments": TOOL_ARGUMENTS, "status": "completed"}
        else:
            text = self.text
        pieces = split_text(text, settings.chunks) if text else []
        limit = payload.get("max_output_tokens")
        is_cut_short = isinstance(limit, int) and len(pieces) > limit
        if is_cut_short:
            pieces = pieces[:limit]
        output_tokens = len(pieces) if call is None else 2
        usage: Any = None if mode == "no_usage" else {
            "input_tokens": settings.prompt_tokens,
            "input_tokens_details": {"cached_tokens": settings.cached_tokens},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": settings.prompt_tokens + output_tokens,
        }
        if settings.usage is not None:
            usage = settings.usage
        message = {"type": "message", "id": f"msg_fake{number}", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "".join(pieces), "annotations": []}]}
        output = [call] if call is not None else [message]
        status = "incomplete" if is_cut_short else "completed"

        def response(state: str, items: list, usage_obj: Any) -> dict[str, Any]:
            return {
                "id": response_id, "object": "response", "created_at": _CREATED, "status": state, "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if state == "incomplete" else None,
                "instructions": payload.get("instructions"), "max_output_tokens": limit, "model": model, "output": items,
                "parallel_tool_calls": True, "previous_response_id": previous, "reasoning": {"effort": None, "summary": None},
                "store": payload.get("store", True), "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": payload.get("tool_choice", "auto"), "tools": payload.get("tools") or [], "top_p": 1.0,
                "truncation": "disabled", "usage": usage_obj, "user": None, "metadata": {},
            }

        if payload.get("store", True) is not False:
            self.responses_made[response_id] = payload
        if not payload.get("stream"):
            await send_json(send, 200, response(status, output, usage))
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]})
        if mode == "slow_first_chunk" and await wait_or_disconnect(receive, settings.delay_s):
            self.count_disconnect()
            return
        sequence = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal sequence
            data = {"type": kind, "sequence_number": sequence, **fields}
            sequence += 1
            return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        try:
            await send_body(send, event("response.created", response=response("in_progress", [], None)))
            await send_body(send, event("response.in_progress", response=response("in_progress", [], None)))
            if call is not None:
                opened = {**call, "arguments": "", "status": "in_progress"}
                await send_body(send, event("response.output_item.added", output_index=0, item=opened))
                for piece in (TOOL_ARGUMENTS[:6], TOOL_ARGUMENTS[6:]):
                    await send_body(send, event("response.function_call_arguments.delta", item_id=call["id"], output_index=0, delta=piece))
                await send_body(send, event("response.function_call_arguments.done", item_id=call["id"], output_index=0,
                                            arguments=TOOL_ARGUMENTS))
                await send_body(send, event("response.output_item.done", output_index=0, item=call))
            else:
                where = {"item_id": message["id"], "output_index": 0}
                await send_body(send, event("response.output_item.added", output_index=0,
                                            item={**message, "status": "in_progress", "content": []}))
                await send_body(send, event("response.content_part.added", **where, content_index=0,
                                            part={"type": "output_text", "text": "", "annotations": []}))
                for sent, piece in enumerate(pieces):
                    if sent == settings.cut_after:
                        if mode == "cut":
                            return  # ends the response unfinished: uvicorn drops the connection
                        if mode == "stall" and await wait_or_disconnect(receive, settings.stall_s):
                            self.count_disconnect()
                            return
                        if mode == "stream_error":
                            error = _ERRORS["500"][1]
                            await send_body(send, event("error", code="server_error", message=error["message"], param=None))
                            await send_body(send, b"", more_body=False)
                            return
                    if settings.chunk_delay_s and await wait_or_disconnect(receive, settings.chunk_delay_s):
                        self.count_disconnect()
                        return
                    await send_body(send, event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]))
                done_text = "".join(pieces)
                await send_body(send, event("response.output_text.done", **where, content_index=0, text=done_text, logprobs=[]))
                await send_body(send, event("response.content_part.done", **where, content_index=0, part=message["content"][0]))
                await send_body(send, event("response.output_item.done", output_index=0, item=message))
            closing = "response.incomplete" if is_cut_short else "response.completed"
            await send_body(send, event(closing, response=response(status, output, usage)), more_body=False)
        except OSError:  # uvicorn's ClientDisconnected: the client went away mid-send
            self.count_disconnect()


class FakeOpenAI(_ResponsesRoute, _MediaRoutes, FakeUpstream):
    modes = MODES
    settings_type = _Settings
    settings: _Settings

    def __init__(self, mode: str = "ok", **settings: Any) -> None:
        super().__init__(mode, **settings)
        self.responses_made: dict[str, dict] = {}  # /responses: id -> the request that made it

    def reset(self) -> None:
        super().reset()
        self.responses_made.clear()

    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def text(self) -> str:
        return f"Hello from fake-{self.settings.name}"

    @property
    def pieces(self) -> list[str]:
        return split_text(self.text, self.settings.chunks)

    def keys_seen(self) -> dict[str, int]:
        """How many requests bore each key (Bearer or Azure's api-key)."""
        counts: dict[str, int] = {}
        for request in list(self.requests):
            key = _key_of(request.headers)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def request_mode(self, headers: dict[str, str], model: str, default: str) -> str:
        keyed = (self.settings.key_modes or {}).get(_key_of(headers))
        if keyed is not None:
            self._check_mode(keyed)
        return super().request_mode(headers, model, keyed or default)

    # -- the ASGI app (in the server's thread) ---------------------------------------------

    async def answer(
        self, request: RecordedRequest, number: int, settings: _Settings, receive: Receive, send: Send
    ) -> None:
        path = request.path
        if settings.api_key is not None and not _has_key(request.headers, settings.api_key):
            await _send_error(send, "401", settings)
        elif request.method == "POST" and path.endswith("/chat/completions"):
            await self._chat(request, number, settings, receive, send)
        elif request.method == "POST" and path.endswith("/responses"):
            await self._responses(request, number, settings, receive, send)
        elif request.method == "POST" and path.endswith("/embeddings"):
            await self._embeddings(request, settings, send)
        elif request.method == "POST" and path.endswith("/images/generations"):
            await self._images(request, number, settings, send)
        elif request.method == "POST" and path.endswith("/moderations"):
            await self._moderations(request, number, settings, send)
        elif request.method == "POST" and path.endswith("/audio/speech"):
            await self._speech(request, settings, send)
        elif request.method == "POST" and path.endswith("/audio/transcriptions"):
            await self._transcriptions(request, settings, send)
        elif request.method == "GET" and path.endswith("/models"):
            await self._models(settings, send)
        else:
            error = {
                "message": f"Invalid URL ({request.method} {path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            await send_json(send, 404, {"error": error})

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
        mode = self.request_mode(request.headers, model, settings.mode)
        if mode in _ERRORS:
            await _send_error(send, mode, settings)
            return
        if mode == "slow_first_byte" and await wait_or_disconnect(receive, settings.delay_s):
            self.count_disconnect()
            return

        pieces = split_text(self.text, settings.chunks)
        usage = None if mode == "no_usage" else _usage(settings, len(pieces))
        if settings.usage is not None:
            usage = settings.usage
        completion_id = f"chatcmpl-fake{number}"
        if not payload.get("stream"):
            await send_json(
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
        if mode == "slow_first_chunk" and await wait_or_disconnect(receive, settings.delay_s):
            self.count_disconnect()
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
            if settings.usage_first:
                opening = orjson.loads(event(first, None)[6:])
                opening["usage"] = usage
                await send_body(send, b"data: " + orjson.dumps(opening) + b"\n\n")
            else:
                await send_body(send, event(first, None))
            for sent, piece in enumerate(pieces):
                if sent == settings.cut_after:
                    if mode == "cut":
                        return  # ends the response unfinished: uvicorn drops the connection
                    if mode == "stall":
                        if await wait_or_disconnect(receive, settings.stall_s):
                            self.count_disconnect()
                            return
                    if mode == "stream_error":
                        error = {"error": _ERRORS["500"][1]}
                        await send_body(send, b"data: " + orjson.dumps(error) + b"\n\n")
                        await send_body(send, b"", more_body=False)
                        return
                if settings.chunk_delay_s and await wait_or_disconnect(
                    receive, settings.chunk_delay_s
                ):
                    self.count_disconnect()
                    return
                await send_body(send, event({"content": piece}, None))
            await send_body(send, event({}, "stop"))
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
                await send_body(send, b"data: " + orjson.dumps(chunk) + b"\n\n")
            await send_body(send, b"data: [DONE]\n\n", more_body=False)
        except OSError:  # uvicorn's ClientDisconnected: the client went away mid-send
            self.count_disconnect()

    async def _embeddings(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        payload = orjson.loads(request.body)
        model = str(payload.get("model") or "")
        mode = self.request_mode(request.headers, model, settings.mode)
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
            vector = embedding_values(text, dims)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        await send_json(
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
        await send_json(send, 200, {"object": "list", "data": models})


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


def _key_of(headers: dict[str, str]) -> str:
    authorization = headers.get("authorization", "")
    return authorization[len("Bearer "):] if authorization.startswith("Bearer ") else headers.get("api-key", "")


def _has_key(headers: dict[str, str], api_key: str) -> bool:
    return headers.get("authorization") == f"Bearer {api_key}" or headers.get("api-key") == api_key


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
    await send_json(send, status, {"error": error}, headers)
