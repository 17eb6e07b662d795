"""The fake OpenAI upstream, taught tool calls and the legacy `/completions` endpoint (the
base fake answers chat text and embeddings only).

With `tools` in the request (and `tool_choice` not "none") it calls the named or first tool
with `{"city": "Paris"}`, whole or streamed as OpenAI does (id and name first, then argument
pieces, finish_reason "tool_calls"); when the last message is a tool result it answers "The
tool answered: <content>". Everything else is the base fake's behaviour, modes included.
"""

from __future__ import annotations

import orjson

from tests.fakes.base import send_body, send_json, split_text
from tests.fakes.openai_upstream import FakeOpenAI, _send_error, _usage

TOOL_ARGUMENTS = '{"city":"Paris"}'


class ToolingOpenAI(FakeOpenAI):
    async def _chat(self, request, number, settings, receive, send) -> None:
        payload = request.json
        messages = payload.get("messages") or []
        tools = payload.get("tools") or []
        mode = self.request_mode(request.headers, str(payload.get("model") or ""), settings.mode)
        last = messages[-1] if messages else {}
        if mode != "ok":
            return await super()._chat(request, number, settings, receive, send)
        if last.get("role") == "tool":
            content = last.get("content")
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or ())
            return await _answer(send, payload, number, settings, {"content": f"The tool answered: {text}"}, "stop", split_text(f"The tool answered: {text}", settings.chunks))
        if tools and payload.get("tool_choice") != "none":
            choice = payload.get("tool_choice")
            name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
            call = {"id": "call_fake01", "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
            return await _answer(send, payload, number, settings, {"content": None, "tool_calls": [call]}, "tool_calls", None)
        return await super()._chat(request, number, settings, receive, send)


async def _answer(send, payload, number, settings, message, finish_reason, pieces) -> None:
    model = payload.get("model")
    completion_id = f"chatcmpl-tool{number}"
    output = len(pieces) if pieces else 2
    usage = _usage(settings, output)
    if not payload.get("stream"):
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "refusal": None, **message}, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
        }
        await send_json(send, 200, body)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    async def chunk(delta, finish=None, *, choices=True, usage_obj=None):
        obj = {"id": completion_id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
        if usage_obj is not None:
            obj["usage"] = usage_obj
        await send_body(send, b"data: " + orjson.dumps(obj) + b"\n\n")

    await chunk({"role": "assistant", "content": None if pieces is None else ""})
    if pieces is not None:
        for piece in pieces:
            await chunk({"content": piece})
    else:
        call = message["tool_calls"][0]
        await chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]})
        for piece in split_text(TOOL_ARGUMENTS, 2):
            await chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    await chunk({}, finish_reason)
    if (payload.get("stream_options") or {}).get("include_usage"):
        await chunk(None, choices=False, usage_obj=usage)
    await send_body(send, b"data: [DONE]\n\n", more_body=False)


class LegacyOpenAI(ToolingOpenAI):
    """Adds `POST .../completions` (the legacy endpoint): "Hello from fake-<name>" as
    `text` choices, whole or streamed, usage as the base fake reports it."""

    async def answer(self, request, number, settings, receive, send) -> None:
        path = request.path
        if not path.endswith("/completions") or path.endswith("/chat/completions"):
            return await super().answer(request, number, settings, receive, send)
        payload = request.json
        mode = self.request_mode(request.headers, str(payload.get("model") or ""), settings.mode)
        if mode != "ok":
            return await _send_error(send, mode, settings)
        pieces = split_text(self.text, settings.chunks)
        usage = _usage(settings, len(pieces))
        base = {"id": "cmpl-fake", "object": "text_completion", "created": 1_700_000_000, "model": payload.get("model")}
        if not payload.get("stream"):
            choice = {"text": self.text, "index": 0, "logprobs": None, "finish_reason": "stop"}
            return await send_json(send, 200, {**base, "choices": [choice], "usage": usage})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for position, piece in enumerate(pieces):
            finish = "stop" if position == len(pieces) - 1 else None
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
            await send_body(send, b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")
        if (payload.get("stream_options") or {}).get("include_usage"):
            await send_body(send, b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        await send_body(send, b"data: [DONE]\n\n", more_body=False)
