"""The HTTP toolkit every adapter shares: send a request and read its whole answer, open a
stream and read it chunk by chunk under idle deadlines, and map upstream failures to
`ProviderError`s. It knows HTTP and OpenAI-shaped error bodies, not any one protocol's requests.

Timeouts: `connect_s` to connect; `first_byte_s` for the response headers and (streaming) the
first chunk together; `idle_s` between two chunks of a stream (see `ChunkStream`).

Error classification (`classify_error`; the Anthropic and Gemini adapters refine it), most
specific first:
    401/402/403/429 whose code, type or text says insufficient quota/balance -> QUOTA
    429 -> RATE_LIMITED (Retry-After / retry-after-ms)   402 -> QUOTA   401, 403 -> AUTH
    other 4xx (not 408/409): context length exceeded -> CONTEXT_OVERFLOW, else BAD_REQUEST;
        never QUOTA, whatever the text says (it may echo the request)
    a quota code (not text) on a 5xx or a stream's error event -> QUOTA
    408, 409, 5xx, connect/read/protocol errors, timeouts -> TRANSIENT
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Mapping

import httpx
import orjson

from providers.base import Chunk, ErrorKind, ProviderError, Timeouts

__all__ = [
    "MAX_ANSWER_BYTES",
    "ChunkStream",
    "answer_object",
    "classify_error",
    "drain",
    "http_timeout",
    "is_json",
    "open_chunk_stream",
    "parse_retry_after",
    "request_whole",
    "stream_object",
    "stream_read_error",
    "transport_error",
    "UpstreamClient",
]

_MESSAGE_LIMIT = 500
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a whole (non-streamed) upstream answer; more is an upstream fault
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
                    raise ProviderError(ErrorKind.TRANSIENT, f"upstream answer is larger than {MAX_ANSWER_BYTES} bytes", status=502)
                parts.append(part)
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise transport_error(exc, api_key) from None
    # Already decoded: the copy must not be decoded again.
    kept = response.headers.copy()
    for name in ("content-encoding", "content-length", "transfer-encoding"):
        if name in kept:
            del kept[name]
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
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream ended before its first chunk", status=502) from None

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Chunk:
        first = self._first
        if first is not None:
            self._first = None
            return first
        self._read_started_at = now = self._loop.time()
        self._reading_task = task = asyncio.current_task(self._loop)  # given the loop: no getpid() on 3.11
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
        raise ProviderError(ErrorKind.TRANSIENT, "upstream stream sent invalid JSON", status=502) from None
    if not isinstance(obj, dict):
        raise ProviderError(ErrorKind.TRANSIENT, "upstream stream sent a non-object", status=502)
    return obj


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
        raise ProviderError(ErrorKind.TRANSIENT, "upstream answered with invalid JSON", status=502) from None
    if not isinstance(answer, dict):
        raise classify(response.status_code, response.content, response.headers, api_key)
    return answer


_URLS: dict[tuple, httpx.URL] = {}
_URLS_MAX = 4096


def _url_parsed(url: str, params: Mapping[str, str] | None) -> httpx.URL:
    """httpx parses a URL in Python, a large part of building a request; an upstream's URLs are
    few (a channel's base URL and a handful of paths), so each is parsed once. URLs are
    immutable; the memo is emptied when it grows past `_URLS_MAX` (a bound, not an LRU)."""
    memo_key = (url, tuple(params.items()) if params else ())
    parsed = _URLS.get(memo_key)
    if parsed is None:
        if len(_URLS) >= _URLS_MAX:
            _URLS.clear()
        parsed = _URLS[memo_key] = httpx.URL(url, params=params) if params else httpx.URL(url)
    return parsed


class UpstreamClient(httpx.AsyncClient):
    """httpx's client for upstream calls, without the per-request work that does nothing here.

    `AsyncClient.build_request` and `send` merge and store cookies (an upstream's cookies would
    land in a jar that every tenant's requests share, and go back to it on theirs), run an auth
    flow and a redirect loop (we set neither), event hooks and a log line: about a quarter of
    the client's CPU per request (bench/profile_relay.py). Here a request built from an absolute
    URL, bytes and headers goes straight to the transport, with the client's default headers and
    the timeout as httpx passes them. Anything else (JSON, files, forms, cookies, a relative URL)
    takes httpx's own path, unchanged."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._merged: dict[tuple, httpx.Headers] = {}

    def build_request(self, method, url, *, content=None, headers=None, params=None, timeout=None, **rest):
        if rest or not isinstance(timeout, httpx.Timeout) or (content is not None and not isinstance(content, bytes)):
            if timeout is not None:
                rest["timeout"] = timeout
            return super().build_request(method, url, content=content, headers=headers, params=params, **rest)
        target = _url_parsed(url, params)
        if not target.is_absolute_url:
            return super().build_request(method, url, content=content, headers=headers, params=params, timeout=timeout)
        return httpx.Request(method, target, content=content, headers=self._headers_for(headers), extensions={"timeout": timeout.as_dict()})

    def _headers_for(self, headers: Mapping[str, str] | None) -> httpx.Headers:
        """The client's default headers with `headers` over them, normalised once per distinct
        set (a channel sends the same few on every request; httpx.Request copies them)."""
        memo_key = tuple(headers.items()) if headers else ()
        merged = self._merged.get(memo_key)
        if merged is None:
            if len(self._merged) >= _URLS_MAX:
                self._merged.clear()
            combined = {key.lower(): value for key, value in self.headers.items()}  # the client's defaults
            if headers:
                combined.update((key.lower(), value) for key, value in headers.items())
            merged = self._merged[memo_key] = httpx.Headers(combined)
        return merged

    async def send(self, request: httpx.Request, *, stream: bool = False, **rest) -> httpx.Response:
        if rest or self.is_closed:
            return await super().send(request, stream=stream, **rest)
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.RequestError as exc:  # as httpx does: the error names its request
            exc.request = request
            raise
        response.request = request
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


def http_timeout(timeouts: Timeouts, read_s: float) -> httpx.Timeout:
    return httpx.Timeout(connect=timeouts.connect_s, read=read_s, write=timeouts.first_byte_s, pool=timeouts.connect_s)


def is_json(response: httpx.Response) -> bool:
    # A 2xx JSON answer to a stream request is an error object (or a server that ignored
    # stream=true); anything else is parsed as SSE, whatever its content type says.
    return "json" in response.headers.get("content-type", "")
