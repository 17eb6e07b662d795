"""A fake Anthropic upstream: a raw ASGI app speaking the Messages API's wire format.

    fake = FakeAnthropic(name="a", chunks=4)
    with ServerThread(fake) as server:      # base_url = server.url (the host root)
        ...

Routes: `POST /v1/messages` (needs `anthropic-version`, and `x-api-key` when `api_key` is
set), `GET /v1/models` (paginated with `limit` / `after_id`).

The answer is "Hello from fake-anthropic-<name>" in `chunks` pieces. With tools in the request
(and `tool_choice` not `none`) the model calls the first tool with `tool_input`; when the last
user turn holds a `tool_result`, it answers "The tool answered: <its content>". With
`thinking` in the request (or `thinking=True` set) it thinks first, signed. Usage reports
`input_tokens`, `cache_read`, `cache_creation` and one output token per piece.

Streams send, as Anthropic does: message_start, content_block_start, ping,
content_block_delta..., content_block_stop, message_delta (stop_reason, cumulative usage),
message_stop; tool input arrives as input_json_delta pieces.

Modes (set_mode, `X-Fake-Mode` header or a model name ending in `@<mode>`):
    ok, 429 (rate_limit_error + retry-after), 529 (overloaded_error), 500 (api_error),
    401 (authentication_error), 403 (permission_error), 404 (not_found_error),
    400 (invalid_request_error), context_overflow (prompt is too long), credit (credit
    balance too low), cut (drops the connection mid-stream), stream_error (an `error`
    event, overloaded, mid-stream)

No pytest here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from tests.fakes.base import (
    FakeUpstream,
    Receive,
    RecordedRequest,
    Send,
    send_body,
    send_json,
    split_text,
    wait_or_disconnect,
)

__all__ = ["FakeAnthropic", "ANTHROPIC_MODES"]

ANTHROPIC_MODES = frozenset(
    {"ok", "429", "529", "500", "401", "403", "404", "400", "context_overflow", "credit", "cut", "stream_error"}
)
SIGNATURE = "EqQBCkYIBxgCKkDfakesignature0123456789abcdef"
_ERRORS: dict[str, tuple[int, str, str]] = {
    "429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "529": (529, "overloaded_error", "Overloaded"),
    "500": (500, "api_error", "Internal server error"),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (403, "permission_error", "Your API key does not have permission to use the specified resource."),
    "404": (404, "not_found_error", "model: claude-nonexistent"),
    "400": (400, "invalid_request_error", "temperature: range: 0..1"),
    "context_overflow": (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    "credit": (400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."),
}


@dataclass
class _Settings:
    mode: str = "ok"
    name: str = "upstream"
    chunks: int = 4
    api_key: str | None = None
    input_tokens: int = 20
    cache_read: int = 0
    cache_creation: int = 0
    retry_after: str = "3"
    cut_after: int = 2
    thinking: bool = False
    tool_input: dict = field(default_factory=lambda: {"city": "Paris", "unit": "celsius"})
    models: tuple[str, ...] = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")
    max_page: int = 1000  # the most models one page holds, whatever `limit` asks
    chunk_delay_s: float = 0.0  # pause before each streamed delta


class FakeAnthropic(FakeUpstream):
    modes = ANTHROPIC_MODES
    settings_type = _Settings
    settings: _Settings

    @property
    def text(self) -> str:
        return f"Hello from fake-anthropic-{self.settings.name}"

    async def answer(
        self, request: RecordedRequest, number: int, settings: _Settings, receive: Receive, send: Send
    ) -> None:
        headers = request.headers
        if settings.api_key is not None and headers.get("x-api-key") != settings.api_key:
            await _error(send, "401", settings)
        elif "anthropic-version" not in headers:
            await send_json(send, 400, _error_body("invalid_request_error", "anthropic-version: header is required"))
        elif request.method == "POST" and request.path == "/v1/messages":
            await self._messages(request, number, settings, receive, send)
        elif request.method == "GET" and request.path == "/v1/models":
            await self._models(request, settings, send)
        else:
            await send_json(send, 404, _error_body("not_found_error", f"Not found: {request.method} {request.path}"))

    async def _messages(self, request: RecordedRequest, number: int, settings: _Settings, receive: Receive, send: Send) -> None:
        payload = request.json
        model = str(payload.get("model") or "")
        mode = self.request_mode(request.headers, model, settings.mode)
        if mode in _ERRORS:
            await _error(send, mode, settings)
            return
        if not isinstance(payload.get("max_tokens"), int):
            await send_json(send, 400, _error_body("invalid_request_error", "max_tokens: Field required"))
            return
        message_id = f"msg_fake{number:04d}"
        blocks = self._answer_blocks(payload, settings)
        output_tokens = sum(len(b["pieces"]) for b in blocks)
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = {
            "input_tokens": settings.input_tokens,
            "cache_creation_input_tokens": settings.cache_creation,
            "cache_read_input_tokens": settings.cache_read,
            "output_tokens": output_tokens,
        }
        if not payload.get("stream"):
            content = []
            for block in blocks:
                if block["type"] == "text":
                    content.append({"type": "text", "text": "".join(block["pieces"])})
                elif block["type"] == "thinking":
                    content.append({"type": "thinking", "thinking": "".join(block["pieces"]), "signature": SIGNATURE})
                else:
                    content.append({"type": "tool_use", "id": block["id"], "name": block["name"], "input": block["input"]})
            await send_json(
                send,
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": usage,
                },
                [(b"request-id", f"req_fake{number}".encode())],
            )
            return

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
            }
        )

        async def event(name: str, data: dict) -> None:
            await send_body(send, f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")

        start_usage = {**usage, "output_tokens": 1}
        await event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        sent = 0
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
            elif block["type"] == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            await event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            if index == 0:
                await event("ping", {"type": "ping"})
            for piece in block["pieces"]:
                if settings.chunk_delay_s and await wait_or_disconnect(receive, settings.chunk_delay_s):
                    self.count_disconnect()
                    return
                if sent == settings.cut_after and mode == "cut":
                    await send_body(send, b"", more_body=False)  # ends mid-answer, no message_stop
                    return
                if sent == settings.cut_after and mode == "stream_error":
                    await event("error", _error_body("overloaded_error", "Overloaded"))
                    await send_body(send, b"", more_body=False)
                    return
                if block["type"] == "text":
                    delta = {"type": "text_delta", "text": piece}
                elif block["type"] == "thinking":
                    delta = {"type": "thinking_delta", "thinking": piece}
                else:
                    delta = {"type": "input_json_delta", "partial_json": piece}
                await event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                sent += 1
            if block["type"] == "thinking":
                await event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": SIGNATURE}})
            await event("content_block_stop", {"type": "content_block_stop", "index": index})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {
                    "input_tokens": settings.input_tokens,
                    "cache_creation_input_tokens": settings.cache_creation,
                    "cache_read_input_tokens": settings.cache_read,
                    "output_tokens": output_tokens,
                },
            },
        )
        await event("message_stop", {"type": "message_stop"})
        await send_body(send, b"", more_body=False)

    def _answer_blocks(self, payload: dict, settings: _Settings) -> list[dict]:
        blocks: list[dict] = []
        if settings.thinking or (payload.get("thinking") or {}).get("type") == "enabled":
            blocks.append({"type": "thinking", "pieces": split_text("Let me think about this.", 2)})
        tool_result = _last_tool_result(payload)
        tools = payload.get("tools") or []
        choice = (payload.get("tool_choice") or {}).get("type")
        if tool_result is not None:
            blocks.append({"type": "text", "pieces": split_text(f"The tool answered: {tool_result}", settings.chunks)})
        elif tools and choice != "none":
            name = (payload.get("tool_choice") or {}).get("name") or tools[0]["name"]
            arguments = orjson.dumps(settings.tool_input).decode()
            blocks.append(
                {"type": "tool_use", "id": "toolu_fake01", "name": name, "input": settings.tool_input, "pieces": split_text(arguments, 2)}
            )
        else:
            blocks.append({"type": "text", "pieces": split_text(self.text, settings.chunks)})
        return blocks

    async def _models(self, request: RecordedRequest, settings: _Settings, send: Send) -> None:
        query = request.params
        limit = min(int(query.get("limit") or 20), settings.max_page)
        ids = list(settings.models)
        start = ids.index(query["after_id"]) + 1 if query.get("after_id") in ids else 0
        page = ids[start : start + limit]
        await send_json(
            send,
            200,
            {
                "data": [
                    {"type": "model", "id": m, "display_name": m.replace("-", " ").title(), "created_at": "2025-09-29T00:00:00Z"}
                    for m in page
                ],
                "has_more": start + limit < len(ids),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
        )


def _last_tool_result(payload: dict) -> str | None:
    messages = payload.get("messages") or []
    if not messages or messages[-1].get("role") != "user" or isinstance(messages[-1].get("content"), str):
        return None
    for block in messages[-1]["content"]:
        if block.get("type") == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                return "".join(b.get("text", "") for b in content if b.get("type") == "text")
            return str(content)
    return None


def _error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fakeerror"}


async def _error(send: Send, mode: str, settings: _Settings) -> None:
    status, kind, message = _ERRORS[mode]
    headers = [(b"retry-after", settings.retry_after.encode())] if status == 429 else []
    await send_json(send, status, _error_body(kind, message), headers)
