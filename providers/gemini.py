"""Google Gemini API (`generateContent`, `streamGenerateContent?alt=sse`, `batchEmbedContents`).

`Target.base_url` is the host root (`https://generativelanguage.googleapis.com`; a trailing
`/v1beta` or `/v1` is tolerated); requests go to `/{version}/models/{model}:{method}` with the
`x-goog-api-key` header, version `options["api_version"]` (default v1beta). Operators may add
`options["safety_settings"]` (Gemini's list, sent as is).

Translation lives in `providers.translate.gemini`. Errors are Google's
`{"error": {"code", "message", "status", "details"}}`:
    429 / RESOURCE_EXHAUSTED               RATE_LIMITED (RetryInfo.retryDelay or Retry-After)
    400 API_KEY_INVALID, 401, 403          AUTH
    400 FAILED_PRECONDITION                AUTH (region or billing: the channel can't serve)
    "exceeds the maximum number of tokens" CONTEXT_OVERFLOW
    other 4xx BAD_REQUEST, 5xx TRANSIENT   (as providers.httpkit.classify_error)
"""

from __future__ import annotations

import base64
import struct
from typing import Any, AsyncIterator, Mapping

import httpx
import orjson

from providers.base import (
    ChatResult,
    Chunk,
    DiscoveredModel,
    EmbeddingResult,
    ErrorKind,
    ProviderError,
    Target,
    Timeouts,
)
from providers.httpkit import (
    ChunkStream,
    answer_object,
    classify_error,
    open_chunk_stream,
    parse_retry_after,
    request_whole,
    stream_object,
    stream_read_error,
)
from providers.sse import iter_sse
from providers.translate import gemini as translate
from providers.translate.common import bad_request

__all__ = ["GeminiAdapter", "classify_gemini_error"]

_CONTEXT_PHRASES = ("exceeds the maximum number of tokens", "input token count", "too many tokens")


class GeminiAdapter:
    name = "gemini"

    async def chat(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        response = await _post(client, target, "generateContent", _body(target, request), timeouts)
        answer = _answer(response, target.api_key)
        completion, usage, finish_reason = translate.from_response(answer)
        return ChatResult(orjson.dumps(completion), usage, finish_reason)

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChunkStream:
        api_key = target.api_key
        return await open_chunk_stream(
            client,
            _url(target, "streamGenerateContent"),
            params={"alt": "sse"},
            body=_body(target, request),
            headers=_headers(target),
            timeouts=timeouts,
            api_key=api_key,
            chunks=lambda response: _iter_chunks(response, api_key),
            error_from_response=lambda response: classify_gemini_error(
                None if response.is_success else response.status_code, response.content, response.headers, api_key
            ),
        )

    async def embeddings(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> EmbeddingResult:
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise bad_request("Gemini embeddings take text input only (a string or a list of strings).")
        model = f"models/{_model(target)}"
        item: dict[str, Any] = {"model": model}
        if request.get("dimensions"):
            item["outputDimensionality"] = request["dimensions"]
        body = {"requests": [{**item, "content": {"parts": [{"text": text}]}} for text in inputs]}
        response = await _post(client, target, "batchEmbedContents", body, timeouts)
        answer = _answer(response, target.api_key)
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, embedding in enumerate(answer.get("embeddings") or ()):
            values = embedding.get("values") or []
            vector: Any = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode() if as_base64 else values
            data.append({"object": "embedding", "index": index, "embedding": vector})
        result: dict[str, Any] = {"object": "list", "data": data, "model": request.get("model") or target.upstream_model}
        usage = translate.usage_from(answer.get("usageMetadata"))
        if usage is not None:
            result["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
        return EmbeddingResult(orjson.dumps(result), usage)  # no usage from Gemini: the router counts

    async def list_models(
        self, client: httpx.AsyncClient, target: Target, timeouts: Timeouts
    ) -> list[DiscoveredModel]:
        models: list[DiscoveredModel] = []
        page_token = ""
        for _ in range(50):
            response = await request_whole(
                client,
                "GET",
                f"{_root(target)}/{_version(target)}/models",
                params={"pageSize": "1000", **({"pageToken": page_token} if page_token else {})},
                headers=_headers(target),
                timeouts=timeouts,
                api_key=target.api_key,
            )
            page = _answer(response, target.api_key)
            for item in page.get("models") or ():
                methods = item.get("supportedGenerationMethods") or []
                kinds = tuple(
                    kind
                    for kind, method in (("chat", "generateContent"), ("embeddings", "embedContent"))
                    if method in methods
                )
                if not kinds or not isinstance(item.get("name"), str):
                    continue
                models.append(
                    DiscoveredModel(
                        id=item["name"].removeprefix("models/"),
                        display_name=str(item.get("displayName") or ""),
                        context_window=item.get("inputTokenLimit"),
                        max_output=item.get("outputTokenLimit"),
                        kinds=kinds,
                    )
                )
            page_token = page.get("nextPageToken") or ""
            if not page_token:
                break
        return models


def classify_gemini_error(
    status: int | None, body: bytes, headers: Mapping[str, str] | None, api_key: str | None
) -> ProviderError:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]  # a stream request answered without alt=sse wraps it in a list
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return classify_error(status, body, headers, api_key)
    state = str(error.get("status") or "")
    message = str(error.get("message") or "")
    details = [d for d in error.get("details") or () if isinstance(d, dict)]
    reasons = {d.get("reason") for d in details}
    label = f"upstream {status}" if status else "upstream error"

    def made(kind: ErrorKind, text: str, retry_after_s: float | None = None) -> ProviderError:
        return ProviderError(kind, text, status=status, retry_after_s=retry_after_s, code=state or None)

    if status == 429 or state == "RESOURCE_EXHAUSTED":
        retry_after_s = _retry_delay(details)
        if retry_after_s is None and headers is not None:
            retry_after_s = parse_retry_after(headers)
        return made(ErrorKind.RATE_LIMITED, f"{label}: rate limited", retry_after_s)
    if (
        status in (401, 403)
        or "API_KEY_INVALID" in reasons
        or state in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        or "api key not valid" in message.lower()
    ):
        return made(ErrorKind.AUTH, f"{label}: the upstream refused the channel's credentials")
    if state == "FAILED_PRECONDITION":
        return made(ErrorKind.AUTH, f"{label}: the upstream account cannot serve this ({message[:200]})")
    if any(phrase in message.lower() for phrase in _CONTEXT_PHRASES) and (status is None or 400 <= status < 500):
        return made(ErrorKind.CONTEXT_OVERFLOW, message[:500])
    return classify_error(status, orjson.dumps({"error": {"message": message, "code": state or None}}), headers, api_key)


def _retry_delay(details: list[dict]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            try:
                return max(float(delay.removesuffix("s")), 0.0)
            except ValueError:
                return None
    return None


def _model(target: Target) -> str:
    return target.upstream_model.removeprefix("models/")


def _root(target: Target) -> str:
    base = target.base_url.rstrip("/")
    for suffix in ("/v1beta", "/v1"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _version(target: Target) -> str:
    return target.options.get("api_version") or "v1beta"


def _url(target: Target, method: str) -> str:
    return f"{_root(target)}/{_version(target)}/models/{_model(target)}:{method}"


def _headers(target: Target) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if target.api_key:
        headers["x-goog-api-key"] = target.api_key
    extra = target.options.get("extra_headers")
    if extra:
        headers.update(extra)
    return headers


def _body(target: Target, request: dict) -> dict:
    body = translate.to_generate_request(request)
    safety = target.options.get("safety_settings")
    if safety:
        body["safetySettings"] = safety
    return body


async def _post(client: httpx.AsyncClient, target: Target, method: str, body: dict, timeouts: Timeouts) -> httpx.Response:
    return await request_whole(
        client, "POST", _url(target, method), body=body, headers=_headers(target), timeouts=timeouts, api_key=target.api_key
    )


def _answer(response: httpx.Response, api_key: str | None) -> dict:
    answer = answer_object(response, api_key, classify_gemini_error)
    if "error" in answer:
        raise classify_gemini_error(response.status_code, response.content, response.headers, api_key)
    return answer


async def _iter_chunks(response: httpx.Response, api_key: str | None) -> AsyncIterator[Chunk]:
    events = iter_sse(response.aiter_bytes())
    state = translate.ResponseEvents()
    try:
        try:
            async for _name, data in events:
                obj = stream_object(data)
                if "error" in obj:
                    raise classify_gemini_error(None, data, None, api_key)
                for chunk, text in state.feed(obj):
                    finish_reason = chunk["choices"][0]["finish_reason"]
                    yield Chunk(b"data: " + orjson.dumps(chunk) + b"\n\n", text, None, finish_reason)
        except httpx.HTTPError as exc:
            raise stream_read_error(exc, api_key) from None
        if state.finish_reason is None:
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream ended without a finish reason", status=502)
        last = state.end()
        if last is not None:
            yield Chunk(b"data: " + orjson.dumps(last) + b"\n\n", "", state.usage, None, True)
    finally:
        await events.aclose()
