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

Beyond chat: `responses` / `open_responses_stream` (OpenAI's Responses API, `/responses`, for
targets that speak it, see `brands.speaks_responses`: the Response and its named stream events
pass through as received, read only for usage, the output text and the end; an `error` or
`response.failed` event is the upstream failing; a stream without `response.completed` or
`response.incomplete` was cut), `completions` / `open_completions_stream` (legacy
`/completions`, same chunk handling: choices carry `text` instead of `delta`), `embeddings` (float or base64; floats
are encoded here when the client asked base64 and the upstream ignored it), `list_models`,
and the media endpoints: `media_json` (images, moderations), `speech` (audio bytes back),
`transcriptions` (the client's form sent again as multipart).


Transport, stream reading and error classification are the shared toolkit in `providers.httpkit`.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any, AsyncIterator

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
from providers.usage import usage_from_openai, usage_from_responses

__all__ = ["OpenAIAdapter", "parse_usage"]

_DONE = b"[DONE]"
# Responses stream events whose `delta` is text the model generated (counted when usage is missing)
_RESPONSE_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete"})
_RESPONSE_FAILURES = frozenset({"error", "response.failed"})
_EVENT_NAME = re.compile(rb"[A-Za-z0-9_.\-]{1,100}")


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

    async def responses(
        self, client: httpx.AsyncClient, target: Target, body: dict, timeouts: Timeouts
    ) -> ChatResult:
        """A Responses request, whole: `ChatResult.body` is the upstream's Response as received."""
        brand = brands.brand_for(target.brand, target.base_url)
        payload = _payload(target, brand, body)
        payload.pop("stream_options", None)  # a stream's option: refused on a whole request
        payload["stream"] = False
        response = await _post(client, target, brand, "responses", payload, timeouts)
        answer = answer_object(response, target.api_key)
        if answer.get("error") or answer.get("status") == "failed":
            raise classify_error(None, response.content, response.headers, target.api_key)
        if not isinstance(answer.get("output"), list):
            raise ProviderError(ErrorKind.TRANSIENT, "upstream answered /responses without a Response", status=502)
        return ChatResult(body=response.content, usage=usage_from_responses(answer.get("usage")), finish_reason=_response_finish(answer))

    async def open_responses_stream(
        self, client: httpx.AsyncClient, target: Target, body: dict, timeouts: Timeouts
    ) -> ChunkStream:
        """A Responses request, streamed: each `Chunk.data` is one upstream event as
        `event: <name>\\ndata: <its JSON bytes>\\n\\n`."""
        brand = brands.brand_for(target.brand, target.base_url)
        payload = _payload(target, brand, body)
        payload["stream"] = True
        return await _open(client, target, brand, "responses", payload, timeouts, _iter_response_events)

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
            status = response.status_code if not response.is_success else 502  # a 200 without audio is the upstream's fault
            raise classify_error(status, response.content, response.headers, target.api_key)
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
        return await _open(client, target, brand, path, payload, timeouts, _iter_chunks)


async def _open(
    client: httpx.AsyncClient, target: Target, brand: str, path: str, payload: dict, timeouts: Timeouts, iterate
) -> ChunkStream:
    """Open a stream at `path`; `iterate(response, api_key)` reads its events as chunks."""
    api_key = target.api_key
    return await open_chunk_stream(
        client,
        _url(target, brand, path),
        body=payload,
        headers=_headers(target, brand),
        params=_params(target, brand),
        timeouts=timeouts,
        api_key=api_key,
        chunks=lambda response: iterate(response, api_key),
        error_from_response=lambda response: _error_from_response(response, api_key),
    )


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


async def _iter_response_events(response: httpx.Response, api_key: str | None) -> AsyncIterator[Chunk]:
    events = iter_sse(response.aiter_bytes())
    try:
        is_complete = False
        try:
            async for event, data in events:
                if data.startswith(_DONE):
                    break  # not OpenAI's, but a compatible server may end so
                chunk = _response_chunk(data, event, api_key)
                yield chunk
                if chunk.finish_reason is not None:
                    is_complete = True
                    break
        except httpx.HTTPError as exc:
            raise stream_read_error(exc, api_key) from None
        if not is_complete:
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream ended without response.completed", status=502)
        await drain(events)
    finally:
        await events.aclose()


def _response_chunk(data: bytes, event: str, api_key: str | None) -> Chunk:
    """One Responses stream event, framed again as it came (its name, its JSON bytes)."""
    obj = stream_object(data)
    kind = obj.get("type")
    if not isinstance(kind, str):
        kind = event
    if kind in _RESPONSE_FAILURES or event in _RESPONSE_FAILURES:
        failed = obj.get("response")
        error = failed.get("error") if isinstance(failed, dict) else None
        raise classify_error(None, orjson.dumps({"error": error}) if isinstance(error, dict) else data, None, api_key)
    name = event.encode() if event != "message" else kind.encode()
    if not _EVENT_NAME.fullmatch(name):
        name = b"message"
    if b"\n" in data:  # data lines joined: newlines between JSON tokens, never inside a string
        data = data.replace(b"\n", b" ")
    text = ""
    usage: Usage | None = None
    finish_reason = None
    if kind in _RESPONSE_DELTAS:
        delta = obj.get("delta")
        text = delta if isinstance(delta, str) else ""
    elif kind == "response.output_item.added":
        item = obj.get("item")
        name_text = item.get("name") if isinstance(item, dict) else None
        text = name_text if isinstance(name_text, str) else ""  # a function call's name is output too
    elif kind in _RESPONSE_ENDS:
        answer = obj.get("response")
        answer = answer if isinstance(answer, dict) else {}
        usage = usage_from_responses(answer.get("usage"))
        finish_reason = _response_finish({"status": kind.removeprefix("response."), **answer})
    return Chunk(b"event: " + name + b"\ndata: " + data + b"\n\n", text, usage, finish_reason)


def _response_finish(answer: dict) -> str:
    """A Response's end in chat's words, for the request log: stop, tool_calls, length,
    content_filter (or the status as given)."""
    status = answer.get("status")
    if status == "incomplete":
        details = answer.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason in (None, "max_output_tokens") else str(reason)[:50]
    if status == "completed":
        output = answer.get("output")
        if isinstance(output, list) and any(isinstance(item, dict) and item.get("type") == "function_call" for item in output):
            return "tool_calls"
        return "stop"
    return str(status or "unknown")[:50]


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


def _error_from_response(response: httpx.Response, api_key: str | None) -> ProviderError:
    if response.is_success:  # 2xx but not a stream: usually an error object sent as JSON
        error = classify_error(None, response.content, response.headers, api_key)
        if error.kind is ErrorKind.TRANSIENT:
            error.message = "upstream answered a stream request without a stream"
        return error
    return classify_error(response.status_code, response.content, response.headers, api_key)


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
