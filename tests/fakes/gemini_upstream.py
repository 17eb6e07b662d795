"""A fake Gemini API upstream: a raw ASGI app speaking generateContent's wire format.

    fake = FakeGemini(name="g", chunks=4)
    with ServerThread(fake) as server:      # base_url = server.url (the host root)

Routes: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`
(SSE, `data: <GenerateContentResponse>` events with CRLF line ends, no end marker),
`:batchEmbedContents`; `GET /v1beta/models` (paginated, `pageSize` / `pageToken`). The key
goes in `x-goog-api-key`; a wrong one gets Google's 400 API_KEY_INVALID.

The answer is "Hello from fake-gemini-<name>" in `chunks` pieces. With functionDeclarations
in the request the model calls the first one with `tool_args`, signed with a
thoughtSignature as Gemini 3 does; after a functionResponse it answers "The tool answered:
<response>". A functionCall sent back without its thoughtSignature is refused with the 400
Gemini 3 gives. usageMetadata reports `prompt_tokens`, `cached_tokens`, `thoughts_tokens`
and one candidate token per piece.

Modes (set_mode, `X-Fake-Mode` header or a model name ending in `@<mode>`):
    ok, 429 (RESOURCE_EXHAUSTED + RetryInfo), 500 (INTERNAL), 503 (UNAVAILABLE),
    400 (INVALID_ARGUMENT), 403 (PERMISSION_DENIED), 404 (NOT_FOUND), blocked_prompt
    (promptFeedback.blockReason), blocked_answer (finishReason SAFETY, no content),
    cut (stream drops mid-answer), stream_error (an error object mid-stream)

No pytest here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
)

__all__ = ["FakeGemini", "GEMINI_MODES", "THOUGHT_SIGNATURE"]

GEMINI_MODES = frozenset(
    {"ok", "429", "500", "503", "400", "403", "404", "blocked_prompt", "blocked_answer", "cut", "stream_error"}
)
THOUGHT_SIGNATURE = "CiQBH8+YbfakeSignature/with+base64=="
_ERRORS: dict[str, tuple[int, str, str, list]] = {
    "429": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}],
    ),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", []),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", []),
    "400": (400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"", []),
    "403": (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity).", []),
    "404": (404, "NOT_FOUND", "models/gemini-nonexistent is not found for API version v1beta, or is not supported for generateContent.", []),
    "api_key": (
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}],
    ),
    "signature": (400, "INVALID_ARGUMENT", "Function call is missing a thought_signature in functionCall parts.", []),
}


@dataclass
class _Settings:
    mode: str = "ok"
    name: str = "upstream"
    chunks: int = 4
    api_key: str | None = None
    prompt_tokens: int = 15
    cached_tokens: int = 0
    thoughts_tokens: int = 0
    cut_after: int = 2
    tool_args: dict = field(default_factory=lambda: {"city": "Paris"})
    models: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004")
    embedding_dims: int = 4
    max_page: int = 1000  # the most models one page holds, whatever `pageSize` asks


class FakeGemini(FakeUpstream):
    modes = GEMINI_MODES
    settings_type = _Settings
    settings: _Settings

    @property
    def text(self) -> str:
        return f"Hello from fake-gemini-{self.settings.name}"

    async def answer(
        self, request: RecordedRequest, number: int, settings: _Settings, receive: Receive, send: Send
    ) -> None:
        headers = request.headers
        path = request.path
        if settings.api_key is not None and headers.get("x-goog-api-key") != settings.api_key:
            await _error(send, "api_key")
        elif request.method == "GET" and path == "/v1beta/models":
            await self._models(request, settings, send)
        elif request.method == "POST" and path.startswith("/v1beta/models/") and ":" in path:
            model, _, method = path.removeprefix("/v1beta/models/").partition(":")
            mode = self.request_mode(headers, model, settings.mode)
            if mode in _ERRORS:
                await _error(send, mode)
            elif method == "generateContent":
                await self._generate(request.json, model, mode, settings, send, is_stream=False)
            elif method == "streamGenerateContent":
                await self._generate(request.json, model, mode, settings, send, is_stream="alt=sse" in request.query)
            elif method == "batchEmbedContents":
                await self._embed(request.json, settings, send)
            else:
                await _error(send, "404")
        else:
            await _error(send, "404")

    async def _generate(self, payload: dict, model: str, mode: str, settings: _Settings, send: Send, *, is_stream: bool) -> None:
        if _has_unsigned_call(payload):
            await _error(send, "signature")
            return
        usage = {
            "promptTokenCount": settings.prompt_tokens,
            "totalTokenCount": settings.prompt_tokens,
            **({"cachedContentTokenCount": settings.cached_tokens} if settings.cached_tokens else {}),
            **({"thoughtsTokenCount": settings.thoughts_tokens} if settings.thoughts_tokens else {}),
        }
        if mode == "blocked_prompt":
            answer = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": usage, "modelVersion": model}
            await send_json(send, 200, answer) if not is_stream else await _sse(send, [answer])
            return
        if mode == "blocked_answer":
            answer = {
                "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}],
                "usageMetadata": usage,
                "modelVersion": model,
            }
            await send_json(send, 200, answer) if not is_stream else await _sse(send, [answer])
            return

        response_text = _function_response_text(payload)
        declarations = [d for tool in payload.get("tools") or () for d in tool.get("functionDeclarations") or ()]
        mode_config = ((payload.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
        parts_list: list[list[dict]]
        if response_text is not None:
            parts_list = [[{"text": piece}] for piece in split_text(f"The tool answered: {response_text}", settings.chunks)]
        elif declarations and mode_config != "NONE":
            allowed = ((payload.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("allowedFunctionNames")
            name = allowed[0] if allowed else declarations[0]["name"]
            parts_list = [[{"functionCall": {"name": name, "args": settings.tool_args}, "thoughtSignature": THOUGHT_SIGNATURE}]]
        else:
            parts_list = [[{"text": piece}] for piece in split_text(self.text, settings.chunks)]
        candidates_tokens = len(parts_list)
        final_usage = {
            **usage,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": settings.prompt_tokens + candidates_tokens + settings.thoughts_tokens,
        }
        if not is_stream:
            parts = [p for group in parts_list for p in group]
            if parts and "text" in parts[0]:
                parts = [{"text": "".join(p["text"] for p in parts)}]
            await send_json(
                send,
                200,
                {
                    "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": final_usage,
                    "modelVersion": model,
                    "responseId": "fakeResponseId01",
                },
            )
            return
        events: list[dict] = []
        for number, parts in enumerate(parts_list):
            is_last = number == len(parts_list) - 1
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if is_last:
                candidate["finishReason"] = "STOP"
            events.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": final_usage if is_last else {**usage, "candidatesTokenCount": number + 1},
                    "modelVersion": model,
                    "responseId": "fakeResponseId01",
                }
            )
        await _sse(send, events, cut_after=settings.cut_after if mode in ("cut", "stream_error") else None, mode=mode)

    async def _embed(self, payload: dict, settings: _Settings, send: Send) -> None:
        embeddings = []
        for item in payload.get("requests") or ():
            text = "".join(p.get("text", "") for p in (item.get("content") or {}).get("parts") or ())
            dims = item.get("outputDimensionality") or settings.embedding_dims
            embeddings.append({"values": embedding_values(text, dims)})
        await send_json(send, 200, {"embeddings": embeddings})

    async def _models(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        query = request.params
        size = min(int(query.get("pageSize") or 50), settings.max_page)
        start = int(query.get("pageToken") or 0)
        page = settings.models[start : start + size]
        models = []
        for name in page:
            is_embedding = "embedding" in name
            models.append(
                {
                    "name": f"models/{name}",
                    "version": "001",
                    "displayName": name.replace("-", " ").title(),
                    "inputTokenLimit": 2048 if is_embedding else 1048576,
                    "outputTokenLimit": 1 if is_embedding else 65536,
                    "supportedGenerationMethods": ["embedContent"] if is_embedding else ["generateContent", "countTokens"],
                }
            )
        answer: dict[str, Any] = {"models": models}
        if start + size < len(settings.models):
            answer["nextPageToken"] = str(start + size)
        await send_json(send, 200, answer)


def _has_unsigned_call(payload: dict) -> bool:
    """Gemini 3 refuses a model turn whose first functionCall lost its thoughtSignature."""
    for content in payload.get("contents") or ():
        if content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or () if "functionCall" in p]
        if calls and not calls[0].get("thoughtSignature"):
            return True
    return False


def _function_response_text(payload: dict) -> str | None:
    contents = payload.get("contents") or []
    if not contents or contents[-1].get("role") != "user":
        return None
    for part in contents[-1].get("parts") or ():
        if "functionResponse" in part:
            response = part["functionResponse"].get("response") or {}
            return str(response.get("output", response))
    return None


async def _sse(send: Send, events: list[dict], *, cut_after: int | None = None, mode: str = "ok") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    for number, event in enumerate(events):
        if cut_after is not None and number == cut_after:
            if mode == "stream_error":
                error = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}
                await send_body(send, b"data: " + orjson.dumps(error) + b"\r\n\r\n")
            await send_body(send, b"", more_body=False)
            return
        await send_body(send, b"data: " + orjson.dumps(event) + b"\r\n\r\n")
    await send_body(send, b"", more_body=False)


async def _error(send: Send, mode: str) -> None:
    status, state, message, details = _ERRORS[mode]
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if details:
        error["details"] = details
    await send_json(send, status, {"error": error})
