"""Anthropic Messages (`POST {host}/v1/messages`), for Anthropic and compatible upstreams.

`Target.base_url` is the host root (`https://api.anthropic.com`; a trailing `/v1` is
tolerated). Headers: `x-api-key`, `anthropic-version` (`options["anthropic_version"]`,
default 2023-06-01), `anthropic-beta` when the client or `options["anthropic_beta"]` asks.

An OpenAI request is translated (`providers.translate.anthropic`), and so is the answer: a
whole Message into a chat.completion, stream events into OpenAI chunks as they arrive. A
request carrying `NATIVE_ANTHROPIC` (an Anthropic client on /v1/messages) is sent as the
client wrote it and answered in Anthropic's shape, events forwarded byte for byte, so
thinking signatures, cache_control, server tools and betas survive the relay.

Errors (`{"type": "error", "error": {"type", "message"}}`) are classified like OpenAI's
(`providers.httpkit.classify_error`: 429 rate limit with retry-after, 401/403 auth, 529
`overloaded_error` and other 5xx transient, "prompt is too long" context overflow, "credit
balance is too low" quota), plus `billing_error` -> QUOTA. An `error` event inside a stream
raises the same way.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import httpx
import orjson

from providers.base import (
    NATIVE_ANTHROPIC,
    ChatResult,
    Chunk,
    DiscoveredModel,
    ErrorKind,
    ProviderError,
    Target,
    Timeouts,
)
from providers.httpkit import (
    ChunkStream,
    answer_object,
    classify_error,
    drain,
    open_chunk_stream,
    request_whole,
    stream_object,
    stream_read_error,
)
from providers.sse import iter_sse
from providers.translate import anthropic as translate

__all__ = ["AnthropicAdapter", "ANTHROPIC_VERSION", "classify_anthropic_error"]

ANTHROPIC_VERSION = "2023-06-01"
_QUOTA_TYPES = frozenset({"billing_error"})
_CREDIT_TOO_LOW = "Your credit balance is too low"


class AnthropicAdapter:
    name = "anthropic"

    async def chat(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        native = request.get(NATIVE_ANTHROPIC)
        response = await request_whole(
            client,
            "POST",
            _url(target, "messages"),
            body=_body(target, request, native, is_stream=False),
            headers=_headers(target, native),
            timeouts=timeouts,
            api_key=target.api_key,
        )
        message = answer_object(response, target.api_key, classify_anthropic_error)
        if message.get("type") == "error":
            raise classify_anthropic_error(response.status_code, response.content, response.headers, target.api_key)
        completion, usage, finish_reason = translate.from_message(message)
        if native is not None:
            return ChatResult(response.content, usage, finish_reason)
        return ChatResult(orjson.dumps(completion), usage, finish_reason)

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChunkStream:
        native = request.get(NATIVE_ANTHROPIC)
        api_key = target.api_key
        return await open_chunk_stream(
            client,
            _url(target, "messages"),
            body=_body(target, request, native, is_stream=True),
            headers=_headers(target, native),
            timeouts=timeouts,
            api_key=api_key,
            chunks=lambda response: _iter_chunks(response, api_key, is_native=native is not None),
            error_from_response=lambda response: classify_anthropic_error(
                None if response.is_success else response.status_code, response.content, response.headers, api_key
            ),
        )

    async def list_models(
        self, client: httpx.AsyncClient, target: Target, timeouts: Timeouts
    ) -> list[DiscoveredModel]:
        models: list[DiscoveredModel] = []
        after: str | None = None
        for _ in range(50):  # pages of 1000: a bound, not a limit anyone reaches
            response = await request_whole(
                client,
                "GET",
                _url(target, "models"),
                params={"limit": "1000", **({"after_id": after} if after else {})},
                headers=_headers(target, None),
                timeouts=timeouts,
                api_key=target.api_key,
            )
            page = answer_object(response, target.api_key, classify_anthropic_error)
            for item in page.get("data") or ():
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    models.append(
                        DiscoveredModel(
                            id=item["id"],
                            display_name=str(item.get("display_name") or ""),
                            context_window=item.get("max_input_tokens") if isinstance(item.get("max_input_tokens"), int) else None,
                            max_output=item.get("max_tokens") if isinstance(item.get("max_tokens"), int) else None,
                        )
                    )
            if not page.get("has_more") or not page.get("last_id"):
                break
            after = page["last_id"]
        return models


def classify_anthropic_error(
    status: int | None, body: bytes, headers: Mapping[str, str] | None, api_key: str | None
) -> ProviderError:
    error = classify_error(status, body, headers, api_key)
    if status == 400 and error.kind is ErrorKind.BAD_REQUEST and error.message.startswith(_CREDIT_TOO_LOW):
        # Anthropic says "out of credit" with a 400: try another channel, blame none (the
        # text could be an echo; validation messages start with a field path, this does not).
        return ProviderError(ErrorKind.SUSPECTED_QUOTA, f"upstream {status}: the upstream account may be out of credit", status=status)
    if error.kind is not ErrorKind.QUOTA and status != 400:  # a 400 is about the request, never the account
        try:
            parsed = orjson.loads(body)
            kind = (parsed.get("error") or {}).get("type") if isinstance(parsed, dict) else None
        except (orjson.JSONDecodeError, AttributeError):
            kind = None
        if kind in _QUOTA_TYPES:
            label = f"upstream {status}" if status else "upstream error"
            return ProviderError(ErrorKind.QUOTA, f"{label}: the upstream account is out of quota", status=status, code=kind)
    return error


def _url(target: Target, path: str) -> str:
    base = target.base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return f"{base}/v1/{path}"


def _headers(target: Target, native: dict | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "anthropic-version": target.options.get("anthropic_version") or ANTHROPIC_VERSION,
    }
    if target.api_key:
        headers["x-api-key"] = target.api_key
    betas = [b for b in (target.options.get("anthropic_beta"), (native or {}).get("beta")) if b]
    if betas:
        headers["anthropic-beta"] = ",".join(betas)
    extra = target.options.get("extra_headers")
    if extra:
        headers.update(extra)
    return headers


def _body(target: Target, request: dict, native: dict | None, *, is_stream: bool) -> dict:
    if native is not None:
        body = dict(native["body"])
        body["model"] = target.upstream_model
        body["messages"] = _without_unsigned_thinking(body.get("messages") or [])
    else:
        default_max = target.options.get("default_max_tokens") or translate.DEFAULT_MAX_TOKENS
        body = translate.to_messages_request(request, target.upstream_model, default_max_tokens=default_max)
    if is_stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def _without_unsigned_thinking(messages: list) -> list:
    """Thinking blocks without a signature were made by us from another upstream's reasoning
    (see translate.anthropic.to_message); Anthropic refuses them, so they are left out."""
    if not any(_has_unsigned_thinking(m) for m in messages):
        return messages
    cleaned = []
    for message in messages:
        if _has_unsigned_thinking(message):
            blocks = [b for b in message["content"] if not (isinstance(b, dict) and b.get("type") == "thinking" and not b.get("signature"))]
            message = {**message, "content": blocks or ""}
        cleaned.append(message)
    return cleaned


def _has_unsigned_thinking(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) and message.get("role") == "assistant" else None
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "thinking" and not b.get("signature") for b in content
    )


async def _iter_chunks(response: httpx.Response, api_key: str | None, *, is_native: bool) -> AsyncIterator[Chunk]:
    events = iter_sse(response.aiter_bytes())
    state = translate.MessageEvents()
    try:
        try:
            async for name, data in events:
                event = stream_object(data)
                if name == "error" or event.get("type") == "error":
                    raise classify_anthropic_error(None, data, None, api_key)
                pieces = state.feed(name, event)
                kind = event.get("type") or name
                # Usage goes with the end of the answer only: a stream cut earlier is counted
                # from what was delivered, not billed as if message_start's counts were all.
                is_final = kind in ("message_delta", "message_stop")
                if is_native:
                    yield Chunk(
                        b"event: " + name.encode() + b"\ndata: " + data + b"\n\n",
                        "".join(text for _, text in pieces),
                        state.usage if is_final else None,
                        state.finish_reason if kind == "message_delta" else None,
                    )
                else:
                    for obj, text in pieces:
                        choices = obj["choices"]
                        finish_reason = choices[0]["finish_reason"] if choices else None
                        yield Chunk(
                            b"data: " + orjson.dumps(obj) + b"\n\n",
                            text,
                            state.usage if is_final else None,
                            finish_reason,
                            not choices,
                        )
                if state.is_done:
                    break
        except httpx.HTTPError as exc:
            raise stream_read_error(exc, api_key) from None
        if not state.is_done:
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream ended without message_stop", status=502)
        await drain(events)
    finally:
        await events.aclose()
