"""OpenAI chat-completions, for OpenAI itself and every compatible upstream.

Same protocol in and out, so bytes pass through: a non-streamed body is returned as received
(parsed once, only to read usage and the finish reason), and each stream event is forwarded as
`data: <the upstream's JSON bytes>\\n\\n`.

Brand quirks: `providers.brands` (by `Target.brand` or the base URL's host), plus
`Target.options`:
    {"azure": {"api_version": "2024-10-21"}}   deployment URL + `api-key` header
    {"extra_headers": {"HTTP-Referer": "..."}}  sent as given, after ours
    {"embeddings_base64": false}                ask for floats and encode base64 here (for
                                                servers that ignore or refuse the option)

Beyond chat: `completions` / `open_completions_stream` (legacy `/completions`, same chunk
handling: choices carry `text` instead of `delta`), `embeddings` (float or base64; floats
are encoded here when the client asked base64 and the upstream ignored it), `list_models`,
and the media endpoints: `media_json` (images, moderations), `speech` (audio bytes back),
`transcriptions` (the client's form sent again as multipart).

Timeouts: `connect_s` to connect; `first_byte_s` for the response headers and (streaming) the
first chunk together; `idle_s` between two chunks of a stream (see `ChunkStream`).

Error classification (`classify_error`), most specific first:
    401/402/403/429 whose code, type or text says insufficient quota/balance -> QUOTA
    429 -> RATE_LIMITED (Retry-After / retry-after-ms)   402 -> QUOTA   401, 403 -> AUTH
    other 4xx (not 408/409): context length exceeded -> CONTEXT_OVERFLOW, else BAD_REQUEST;
        never QUOTA, whatever the text says (it may echo the request)
    a quota code (not text) on a 5xx or a stream's error event -> QUOTA
    408, 409, 5xx, connect/read/protocol errors, timeouts -> TRANSIENT
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import struct
import time
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Mapping

import httpx
import orjson

from providers import brands
from providers.base import (
    NATIVE_ANTHROPIC,
    ChatResult,
    Chunk,
    DiscoveredModel,
    EmbeddingResult,
    ErrorKind,
    MediaResult,
    ProviderError,
    Target,
    Timeouts,
    Usage,
)
from providers.sse import iter_sse
from providers.usage import usage_from_openai

__all__ = [
    "ChunkStream",
    "OpenAIAdapter",
    "answer_object",
    "classify_error",
    "drain",
    "http_timeout",
    "is_json",
    "open_chunk_stream",
    "parse_retry_after",
    "parse_usage",
    "request_whole",
    "stream_object",
    "stream_read_error",
    "transport_error",
]

_MESSAGE_LIMIT = 500
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a whole (non-streamed) upstream answer; more is an upstream fault
_DONE = b"[DONE]"
_DRAIN_S = 0.5  # after [DONE], how long to wait for the body's end before giving up on reuse
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "insufficient_balance",
        "insufficient_user_quota",  # One API / New API
        "pre_consume_token_quota_failed",
    }
)
_QUOTA_PHRASES = (
    "insufficient_quota",
    "insufficient quota",
    "insufficient balance",
    "insufficient_balance",
    "exceeded your current quota",
    "credit balance is too low",
    "余额不足",
)
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_PHRASES = (
    "maximum context length",
    "context_length_exceeded",
    "context length exceeded",
    "context window",
    "prompt is too long",
)


class OpenAIAdapter:
    name = "openai"

    async def chat(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        return await self._whole(client, target, request, timeouts, "chat/completions")

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChunkStream:
        return await self._stream(client, target, request, timeouts, "chat/completions")

    async def completions(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        return await self._whole(client, target, request, timeouts, "completions")

    async def open_completions_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChunkStream:
        return await self._stream(client, target, request, timeouts, "completions")

    async def embeddings(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> EmbeddingResult:
        payload = dict(request)
        payload["model"] = target.upstream_model
        wants_base64 = payload.get("encoding_format") == "base64"
        if wants_base64 and target.options.get("embeddings_base64") is False:
            payload["encoding_format"] = "float"
        brand = brands.brand_for(target.brand, target.base_url)
        response = await _post(client, target, brand, "embeddings", payload, timeouts)
        answer = _answer(response, target.api_key)
        if not isinstance(answer.get("data"), list):
            raise ProviderError(
                ErrorKind.TRANSIENT, "upstream answered embeddings without data", status=502
            )
        usage = answer.get("usage")
        body = response.content
        if wants_base64 and _encode_floats(answer["data"]):
            body = orjson.dumps(answer)
        return EmbeddingResult(body, usage_from_openai(usage, has_completion=False))

    async def media_json(
        self, client: httpx.AsyncClient, target: Target, path: str, request: dict, timeouts: Timeouts
    ) -> MediaResult:
        """A JSON media request (`images/generations`, `moderations`) answered with JSON."""
        brand = brands.brand_for(target.brand, target.base_url)
        response = await _post(client, target, brand, path, _payload(target, brand, request), timeouts)
        answer = _answer(response, target.api_key)
        return MediaResult(response.content, "application/json", answer)

    async def speech(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> MediaResult:
        """`audio/speech`: JSON in, audio bytes out (passed on with the upstream's type)."""
        brand = brands.brand_for(target.brand, target.base_url)
        response = await _post(client, target, brand, "audio/speech", _payload(target, brand, request), timeouts)
        media_type = response.headers.get("content-type", "application/octet-stream")
        if not response.is_success or media_type.startswith("application/json") or not response.content:
            raise classify_error(response.status_code if not response.is_success else 502, response.content, response.headers, target.api_key)
        return MediaResult(response.content, media_type, None)

    async def transcriptions(
        self,
        client: httpx.AsyncClient,
        target: Target,
        fields: list[tuple[str, str]],
        file: tuple[str, bytes, str],
        timeouts: Timeouts,
    ) -> MediaResult:
        """`audio/transcriptions`: the client's form sent again as multipart (the model renamed
        to the upstream's); a text answer (`response_format` text, srt, vtt) is passed on too."""
        brand = brands.brand_for(target.brand, target.base_url)
        data = [(name, target.upstream_model if name == "model" else value) for name, value in fields]
        form = httpx.Request("POST", "http://form.invalid/", data=dict(_grouped(data)), files={"file": file})
        headers = {**_headers(target, brand), "Content-Type": form.headers["content-type"]}
        response = await request_whole(
            client, "POST", _url(target, brand, "audio/transcriptions"), headers=headers, params=_params(target, brand),
            timeouts=timeouts, api_key=target.api_key, content=form.read(),
        )
        media_type = response.headers.get("content-type", "application/json")
        if not media_type.startswith("application/json"):
            if not response.is_success:
                raise classify_error(response.status_code, response.content, response.headers, target.api_key)
            return MediaResult(response.content, media_type, None)
        return MediaResult(response.content, media_type, answer_object(response, target.api_key))

    async def list_models(
        self, client: httpx.AsyncClient, target: Target, timeouts: Timeouts
    ) -> list[DiscoveredModel]:
        brand = brands.brand_for(target.brand, target.base_url)
        response = await request_whole(
            client,
            "GET",
            f"{target.base_url.rstrip('/')}/{'openai/' if _azure(target, brand) else ''}models",
            headers=_headers(target, brand),
            params=_params(target, brand),
            timeouts=timeouts,
            api_key=target.api_key,
        )
        answer = _answer(response, target.api_key)
        models = []
        for item in answer.get("data") or ():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                window = item.get("context_length") or item.get("context_window") or item.get("max_model_len")
                is_embedding = "embed" in item["id"].lower()
                models.append(
                    DiscoveredModel(
                        id=item["id"],
                        display_name=str(item.get("name") or ""),
                        context_window=window if isinstance(window, int) else None,
                        kinds=("embeddings",) if is_embedding else ("chat",),
                    )
                )
        return models

    async def _whole(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts, path: str
    ) -> ChatResult:
        brand = brands.brand_for(target.brand, target.base_url)
        payload = _payload(target, brand, request)
        payload.pop("stream_options", None)  # OpenAI rejects it on a non-streamed request
        if payload.get("stream"):
            payload["stream"] = False
        brands.prepare(brand, payload)
        response = await _post(client, target, brand, path, payload, timeouts)
        answer = _answer(response, target.api_key)
        usage = answer.get("usage")
        choices = answer.get("choices")
        return ChatResult(
            body=response.content,
            usage=parse_usage(usage),
            finish_reason=choices[0].get("finish_reason") if choices else None,
        )

    async def _stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts, path: str
    ) -> ChunkStream:
        brand = brands.brand_for(target.brand, target.base_url)
        payload = _payload(target, brand, request)
        payload["stream"] = True
        # Always ask for usage: billing needs it; the router hides the chunk if the client
        # did not ask for it (Chunk.is_usage_only).
        stream_options = payload.get("stream_options")
        payload["stream_options"] = {
            **(stream_options if isinstance(stream_options, dict) else {}),
            "include_usage": True,
        }
        brands.prepare(brand, payload)
        api_key = target.api_key
        return await open_chunk_stream(
            client,
            _url(target, brand, path),
            body=payload,
            headers=_headers(target, brand),
            params=_params(target, brand),
            timeouts=timeouts,
            api_key=api_key,
            chunks=lambda response: _iter_chunks(response, api_key),
            error_from_response=lambda response: _error_from_response(response, api_key),
        )


async def request_whole(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    api_key: str | None,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send a request (`body` as JSON, or `content` as given) whose answer is read whole within `first_byte_s`; any
    adapter may use it. A connection failure or timeout is a TRANSIENT ProviderError, and so is
    an answer longer than `MAX_ANSWER_BYTES` (read no further: a lying upstream cannot fill
    the relay's memory)."""
    http_request = client.build_request(
        method,
        url,
        content=content if body is None else orjson.dumps(body),
        headers=headers,
        params=params,
        timeout=http_timeout(timeouts, timeouts.first_byte_s),
    )
    try:
        response = await client.send(http_request, stream=True)
        try:
            parts: list[bytes] = []
            size = 0
            async for part in response.aiter_bytes():
                size += len(part)
                if size > MAX_ANSWER_BYTES:
                    raise ProviderError(
                        ErrorKind.TRANSIENT, f"upstream answer is larger than {MAX_ANSWER_BYTES} bytes", status=502
                    )
                parts.append(part)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise transport_error(exc, api_key) from None
    # Already decoded: the copy must not be decoded again.
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=kept, content=b"".join(parts), request=http_request)


async def open_chunk_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    body: Any,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    api_key: str | None,
    chunks: Callable[[httpx.Response], AsyncGenerator[Chunk, None]],
    error_from_response: Callable[[httpx.Response], ProviderError],
    params: Mapping[str, str] | None = None,
) -> ChunkStream:
    """POST a stream request (`body` as JSON), check the answer is a 2xx stream, read its
    first chunk, all within `first_byte_s`; any adapter may use it. An error answer, or a 2xx
    JSON one (an error object, or a server that ignored the stream flag), is read whole and
    handed to `error_from_response`."""
    http_request = client.build_request(
        "POST",
        url,
        content=orjson.dumps(body),
        headers=headers,
        params=params,
        # A backstop only: ChunkStream enforces idle_s between chunks itself.
        timeout=http_timeout(timeouts, max(timeouts.first_byte_s, timeouts.idle_s)),
    )
    response: httpx.Response | None = None
    stream: ChunkStream | None = None
    try:
        async with asyncio.timeout(timeouts.first_byte_s):
            response = await client.send(http_request, stream=True)
            if not response.is_success or is_json(response):
                await response.aread()
                raise error_from_response(response)
            stream = ChunkStream(chunks(response), idle_s=timeouts.idle_s, response=response)
            await stream.read_first()
            return stream
    except BaseException as exc:  # includes cancellation: the client went away
        if stream is not None:
            await stream.aclose()
        elif response is not None:
            await response.aclose()
        if isinstance(exc, TimeoutError):
            raise ProviderError(
                ErrorKind.TRANSIENT,
                f"upstream sent no first chunk within {timeouts.first_byte_s:g}s",
            ) from None
        if isinstance(exc, httpx.HTTPError):
            raise transport_error(exc, api_key) from None
        raise


class ChunkStream:
    """A `ChatStream` over an async generator of chunks; any adapter may use it.

    `read_first()` (called by `open_stream`, under its first-byte deadline) reads the first
    chunk ahead. Later reads are limited to `idle_s` each by one timer per stream that is
    re-armed only when it fires, rather than a timeout context per chunk (a few microseconds
    and a timer allocation each, on the hottest loop we have). `aclose()` closes the
    generator and the HTTP response, which is how a departed client cancels the upstream.
    """

    __slots__ = (
        "_chunks",
        "_response",
        "_idle_s",
        "_first",
        "_loop",
        "_timer",
        "_read_started_at",
        "_reading_task",
        "_is_timed_out",
    )

    def __init__(
        self,
        chunks: AsyncGenerator[Chunk, None],
        *,
        idle_s: float,
        response: httpx.Response | None = None,
    ) -> None:
        self._chunks = chunks
        self._response = response
        self._idle_s = idle_s
        self._first: Chunk | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._read_started_at = 0.0
        self._reading_task: asyncio.Task | None = None
        self._is_timed_out = False

    async def read_first(self) -> None:
        try:
            self._first = await self._chunks.__anext__()
        except StopAsyncIteration:
            raise ProviderError(
                ErrorKind.TRANSIENT, "upstream stream ended before its first chunk", status=502
            ) from None

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Chunk:
        first = self._first
        if first is not None:
            self._first = None
            return first
        self._read_started_at = now = self._loop.time()
        self._reading_task = task = asyncio.current_task()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._idle_s, self._on_timer)
        try:
            return await self._chunks.__anext__()
        except asyncio.CancelledError:
            # Ours (the idle timer) unless someone else cancelled the task too.
            if self._is_timed_out and task is not None and task.uncancel() == 0:
                self._stop_timer()
                raise ProviderError(
                    ErrorKind.TRANSIENT,
                    f"upstream stream was idle for more than {self._idle_s:g}s",
                ) from None
            self._stop_timer()
            raise
        except BaseException:
            self._stop_timer()  # the stream is over (StopAsyncIteration) or broken
            raise
        finally:
            self._reading_task = None

    async def aclose(self) -> None:
        self._stop_timer()
        try:
            await self._chunks.aclose()
        except RuntimeError:
            pass  # still reading in another task: closing the response below ends that read
        finally:
            if self._response is not None:
                await self._response.aclose()

    def _on_timer(self) -> None:
        self._timer = None
        task = self._reading_task
        if task is None:
            return  # between reads: the next read re-arms
        deadline = self._read_started_at + self._idle_s
        if self._loop.time() >= deadline:
            self._is_timed_out = True
            task.cancel()
        else:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _iter_chunks(response: httpx.Response, api_key: str | None) -> AsyncIterator[Chunk]:
    events = iter_sse(response.aiter_bytes())
    try:
        is_complete = False
        try:
            async for event, data in events:
                if data.startswith(_DONE):
                    is_complete = True
                    break
                chunk = _parse_chunk(data, event, api_key)
                if chunk.finish_reason is not None:
                    # Some compatible servers stop after the finish (and usage) without
                    # [DONE]; the answer is whole, so that is not a broken stream.
                    is_complete = True
                yield chunk
        except httpx.HTTPError as exc:
            raise stream_read_error(exc, api_key) from None
        if not is_complete:
            raise ProviderError(
                ErrorKind.TRANSIENT, "upstream stream ended without [DONE]", status=502
            )
        await drain(events)
    finally:
        await events.aclose()


async def drain(events: AsyncIterator) -> None:
    """After a stream's last event, read to the end of the body (normally only the
    chunked-encoding terminator) so that httpx returns the connection to the pool instead
    of closing it; any adapter may use it."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            async for _ in events:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


def stream_read_error(exc: httpx.HTTPError, api_key: str | None) -> ProviderError:
    """A transport failure while reading a stream that had begun; any adapter may use it."""
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderError(ErrorKind.TRANSIENT, "upstream stream read timed out")
    return transport_error(exc, api_key)


def stream_object(data: bytes) -> dict:
    """The JSON object of one stream event; any adapter may use it."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(
            ErrorKind.TRANSIENT, "upstream stream sent invalid JSON", status=502
        ) from None
    if not isinstance(obj, dict):
        raise ProviderError(ErrorKind.TRANSIENT, "upstream stream sent a non-object", status=502)
    return obj


def _parse_chunk(data: bytes, event: str, api_key: str | None) -> Chunk:
    obj = stream_object(data)
    if "error" in obj or event == "error":
        raise classify_error(None, data, None, api_key)

    choices = obj.get("choices")
    usage_obj = obj.get("usage")
    if usage_obj is None and "x_groq" in obj:  # Groq reports stream usage there
        x_groq = obj["x_groq"]
        usage_obj = x_groq.get("usage") if isinstance(x_groq, dict) else None
    usage = parse_usage(usage_obj) if usage_obj else None
    text = ""
    finish_reason = None
    if choices:
        for choice in choices:
            delta = choice.get("delta")
            piece = _delta_text(delta) if delta else choice.get("text")  # text: /completions
            if piece:
                text = text + piece if text else piece
            reason = choice.get("finish_reason")
            if reason:
                finish_reason = reason
    return Chunk(
        b"data: " + data + b"\n\n",
        text,
        usage,
        finish_reason,
        not choices and bool(usage_obj),  # a usage chunk, even one whose counts we refuse
    )


def _delta_text(delta: dict) -> str:
    text = delta.get("content") or ""
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        text += reasoning
    tool_calls = delta.get("tool_calls")
    if tool_calls:
        for call in tool_calls:
            function = call.get("function")
            if function:
                text += (function.get("name") or "") + (function.get("arguments") or "")
    return text


def parse_usage(usage: Any) -> Usage | None:
    """A chat or completions usage object, checked (see providers.usage); None if unusable."""
    return usage_from_openai(usage)


def classify_error(
    status: int | None,
    body: bytes,
    headers: Mapping[str, str] | None,
    api_key: str | None,
) -> ProviderError:
    """An upstream error answer (status None: an error event inside a 2xx stream)."""
    message, code, kind_hint = _error_fields(body)
    haystack = f"{code or ''} {kind_hint or ''} {message}".lower()
    shown = _redact(message, api_key)[:_MESSAGE_LIMIT]
    label = f"upstream {status}" if status else "upstream error"

    def error(kind: ErrorKind, text: str, retry_after_s: float | None = None) -> ProviderError:
        return ProviderError(kind, text, status=status, retry_after_s=retry_after_s, code=code)

    # The vendor's code or type decides first; phrases are read only on the statuses where an
    # account problem is plausible (401/402/403/429), because any other answer may echo the
    # customer's own words back ("role": "insufficient quota") and must not disable a channel.
    is_quota_code = code in _QUOTA_CODES or kind_hint in _QUOTA_CODES
    says_quota = any(phrase in haystack for phrase in _QUOTA_PHRASES)
    if status in (401, 402, 403, 429) and (is_quota_code or says_quota):
        return error(ErrorKind.QUOTA, f"{label}: the upstream account is out of quota")
    if status == 429:
        retry_after_s = parse_retry_after(headers) if headers is not None else None
        return error(ErrorKind.RATE_LIMITED, f"{label}: rate limited", retry_after_s)
    if status == 402:
        return error(ErrorKind.QUOTA, f"{label}: the upstream account is out of quota")
    if status in (401, 403):
        # The upstream's text may quote part of our key: never show it.
        return error(ErrorKind.AUTH, f"{label}: the upstream refused the channel's credentials")
    if status is not None and 400 <= status < 500 and status not in (408, 409):
        # A 4xx is about the request: answered to the client, never held against the channel.
        if code in _CONTEXT_CODES or any(phrase in haystack for phrase in _CONTEXT_PHRASES):
            return error(ErrorKind.CONTEXT_OVERFLOW, shown or "context length exceeded")
        return error(ErrorKind.BAD_REQUEST, shown or f"{label}: bad request")
    if is_quota_code:  # an error event inside a stream, or a 5xx, with the vendor's quota code
        return error(ErrorKind.QUOTA, f"{label}: the upstream account is out of quota")
    if status is None and (code in _CONTEXT_CODES or any(phrase in haystack for phrase in _CONTEXT_PHRASES)):
        return error(ErrorKind.CONTEXT_OVERFLOW, shown or "context length exceeded")
    return error(ErrorKind.TRANSIENT, f"{label}: {shown}" if shown else label)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def transport_error(exc: httpx.HTTPError, api_key: str | None) -> ProviderError:
    """A connection-level failure: always worth another channel."""
    if isinstance(exc, httpx.TimeoutException):
        text = f"upstream timed out ({type(exc).__name__})"
    else:
        detail = _redact(str(exc), api_key)[:200]
        text = f"upstream connection failed ({type(exc).__name__}: {detail})"
    return ProviderError(ErrorKind.TRANSIENT, text)


def _error_from_response(response: httpx.Response, api_key: str | None) -> ProviderError:
    if response.is_success:  # 2xx but not a stream: usually an error object sent as JSON
        error = classify_error(None, response.content, response.headers, api_key)
        if error.kind is ErrorKind.TRANSIENT:
            error.message = "upstream answered a stream request without a stream"
        return error
    return classify_error(response.status_code, response.content, response.headers, api_key)


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, code, type) from an OpenAI-shaped error body, or its text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[: _MESSAGE_LIMIT * 2].decode("utf-8", "replace").strip(), None, None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        return "", None, None
    message = error.get("message") or error.get("detail") or ""
    code = error.get("code")
    kind = error.get("type")
    return (
        message if isinstance(message, str) else str(message),
        str(code) if code is not None else None,
        kind if isinstance(kind, str) else None,
    )


def _redact(text: str, api_key: str | None) -> str:
    if api_key and api_key in text:
        text = text.replace(api_key, "***")
    return text


def _azure(target: Target, brand: brands.Brand) -> dict | None:
    azure = target.options.get("azure")
    if azure is None and brand.is_azure:
        azure = {}
    return azure


def _url(target: Target, brand: brands.Brand, path: str) -> str:
    base = target.base_url.rstrip("/")
    if _azure(target, brand) is not None:
        return f"{base}/openai/deployments/{target.upstream_model}/{path}"
    return f"{base}/{path}"


def _params(target: Target, brand: brands.Brand) -> dict[str, str] | None:
    azure = _azure(target, brand)
    if azure is not None:
        return {"api-version": azure.get("api_version") or brands.AZURE_API_VERSION}
    return None


def _headers(target: Target, brand: brands.Brand) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        if _azure(target, brand) is not None:
            headers["api-key"] = target.api_key
        else:
            headers["Authorization"] = f"Bearer {target.api_key}"
    extra = target.options.get("extra_headers")
    if extra:
        headers.update(extra)
    return headers


def _payload(target: Target, brand: brands.Brand, request: dict) -> dict:
    payload = dict(request)
    payload["model"] = target.upstream_model
    payload.pop(NATIVE_ANTHROPIC, None)
    return payload


async def _post(
    client: httpx.AsyncClient,
    target: Target,
    brand: brands.Brand,
    path: str,
    payload: dict,
    timeouts: Timeouts,
) -> httpx.Response:
    return await request_whole(
        client,
        "POST",
        _url(target, brand, path),
        body=payload,
        headers=_headers(target, brand),
        params=_params(target, brand),
        timeouts=timeouts,
        api_key=target.api_key,
    )


def answer_object(
    response: httpx.Response,
    api_key: str | None,
    classify: Callable[..., ProviderError] = classify_error,
) -> dict:
    """The JSON object of a whole answer, any adapter's: `classify`'s error for an error status
    or a body that is not an object, TRANSIENT for invalid JSON. An error object inside a 2xx
    answer is the caller's to recognise: each protocol shapes it its own way."""
    if not response.is_success:
        raise classify(response.status_code, response.content, response.headers, api_key)
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderError(
            ErrorKind.TRANSIENT, "upstream answered with invalid JSON", status=502
        ) from None
    if not isinstance(answer, dict):
        raise classify(response.status_code, response.content, response.headers, api_key)
    return answer


def _answer(response: httpx.Response, api_key: str | None) -> dict:
    answer = answer_object(response, api_key)
    if "error" in answer and "choices" not in answer and "data" not in answer:
        raise classify_error(response.status_code, response.content, response.headers, api_key)
    return answer


def _grouped(fields: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form fields as httpx takes them: a name given more than once (`timestamp_granularities[]`) as a list."""
    grouped: dict[str, str | list[str]] = {}
    for name, value in fields:
        if name in grouped:
            previous = grouped[name]
            grouped[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            grouped[name] = value
    return grouped


def _encode_floats(data: list) -> bool:
    """Turn float embeddings into base64 (little-endian float32, as OpenAI sends them), in
    place; False when there was nothing to encode (the upstream honoured base64)."""
    changed = False
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            changed = True
    return changed


def http_timeout(timeouts: Timeouts, read_s: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=timeouts.connect_s, read=read_s, write=timeouts.first_byte_s, pool=timeouts.connect_s
    )


def is_json(response: httpx.Response) -> bool:
    # A 2xx JSON answer to a stream request is an error object (or a server that ignored
    # stream=true); anything else is parsed as SSE, whatever its content type says.
    return "json" in response.headers.get("content-type", "")
