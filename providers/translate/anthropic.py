"""OpenAI chat-completions <-> Anthropic Messages, both ways.

Outbound (an Anthropic upstream serves an OpenAI request):
    to_messages_request(request, model)     OpenAI request -> Messages request body
    from_message(message)                   Messages answer -> (chat.completion, Usage, finish)
    MessageEvents                           Messages stream events -> OpenAI chunk objects

Inbound (an Anthropic client, /v1/messages, served by any upstream):
    from_messages_request(body)             Messages request -> OpenAI request
    to_message(completion, ...)             chat.completion -> Messages answer
    ChunkEvents                             OpenAI chunk objects -> Messages stream events

What maps to what (and what is dropped) is listed in docs/protocols.md; the table-driven
tests in tests/providers/cases/anthropic_*.json hold one row per field.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from providers.base import Usage
from providers.usage import usage_from_anthropic
from providers.translate.common import (
    bad_request,
    chunk_object,
    data_url,
    json_object,
    new_id,
    parse_data_url,
    sse_event,
    text_of,
    usage_to_openai,
)

__all__ = [
    "ChunkEvents",
    "DEFAULT_MAX_TOKENS",
    "FINISH_FROM_STOP",
    "MessageEvents",
    "STOP_FROM_FINISH",
    "from_message",
    "from_messages_request",
    "to_message",
    "to_messages_request",
    "usage_from",
    "usage_to_anthropic",
]

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; ARCHITECTURE's default reservation
FINISH_FROM_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_FROM_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# reasoning_effort -> a thinking budget (tokens); never more than max_tokens allows.
_THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_MIN_THINKING_BUDGET = 1024
_MAX_USER_CHARS = 64  # OpenAI's end-user id limit; longer ids (Claude Code's) are not sent


# --- outbound: OpenAI request -> Anthropic --------------------------------------------------


def to_messages_request(request: dict, model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    if (request.get("n") or 1) > 1:
        raise bad_request("Anthropic models give one choice per request; 'n' must be 1.")
    system: list[str] = []
    messages: list[dict] = []
    for message in request.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"), separator="\n")
            if text:
                system.append(text)
        elif role == "user":
            _append(messages, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(message))
        elif role in ("tool", "function"):
            _append(messages, "user", [_tool_result(message)])
        else:
            raise bad_request(f"Unknown message role {role!r}.")

    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or default_max_tokens
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = "\n\n".join(system)
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.get("temperature") is not None:
        body["temperature"] = min(float(request["temperature"]), 1.0)  # Anthropic's range is 0..1
    if request.get("top_p") is not None:
        body["top_p"] = request["top_p"]
    user = request.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}

    tools = [_tool(t) for t in request.get("tools") or () if isinstance(t, dict) and t.get("type", "function") == "function"]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(request.get("tool_choice"))
        if request.get("parallel_tool_calls") is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            body["tool_choice"] = choice

    effort = request.get("reasoning_effort")
    if effort in _THINKING_BUDGETS:
        budget = min(_THINKING_BUDGETS[effort], max_tokens - 1)
        if budget >= _MIN_THINKING_BUDGET:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            body.pop("temperature", None)  # thinking requires the default temperature
            body.pop("top_p", None)
    return body


def _append(messages: list[dict], role: str, blocks: list[dict]) -> None:
    """Add blocks as a turn, merging into the previous turn of the same role (tool results
    and the user text after them are one user turn in Anthropic's model)."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        merged = messages[-1]["content"] + blocks
        # tool_result blocks must open a user turn, before any other content
        merged.sort(key=lambda block: block.get("type") != "tool_result")
        messages[-1]["content"] = merged
    else:
        messages.append({"role": role, "content": list(blocks)})


def _user_blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or ():
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url")))
        elif kind == "file":
            blocks.append(_document_block(part.get("file") or {}))
        else:
            raise bad_request(f"Anthropic models do not take '{kind}' content parts.")
    return blocks


def _image_block(image: Any) -> dict:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad_request("An image_url part has no url.")
    parsed = parse_data_url(url)
    if parsed is not None:
        media_type, data = parsed
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document_block(file: dict) -> dict:
    parsed = parse_data_url(file.get("file_data") or "")
    if parsed is None or parsed[0] != "application/pdf":
        raise bad_request("Anthropic models take files as PDF data URLs (file.file_data) only.")
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict) -> list[dict]:
    blocks = []
    text = text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": function.get("name") or "",
                "input": json_object(function.get("arguments")),
            }
        )
    legacy = message.get("function_call")  # deprecated `functions` API
    if isinstance(legacy, dict):
        blocks.append(
            {"type": "tool_use", "id": "call_" + (legacy.get("name") or "function"), "name": legacy.get("name") or "", "input": json_object(legacy.get("arguments"))}
        )
    return blocks


def _tool_result(message: dict) -> dict:
    content = message.get("content")
    tool_use_id = message.get("tool_call_id") or ("call_" + (message.get("name") or "function"))
    if isinstance(content, list):
        blocks = _user_blocks(content)
        return {"type": "tool_result", "tool_use_id": tool_use_id, "content": blocks}
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": content or ""}


def _tool(tool: dict) -> dict:
    function = tool.get("function") or {}
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    converted: dict[str, Any] = {"name": function.get("name") or "", "input_schema": schema}
    if function.get("description"):
        converted["description"] = function["description"]
    return converted


def _tool_choice(choice: Any) -> dict | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


# --- outbound: Anthropic answer -> OpenAI ----------------------------------------------------


def usage_from(usage: Any) -> Usage | None:
    """Anthropic usage -> ours, checked (see providers.usage); None if unusable."""
    return usage_from_anthropic(usage)


def from_message(message: dict) -> tuple[dict, Usage, str | None]:
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if thoughts:
        reply["reasoning_content"] = "".join(thoughts)
    stop_reason = message.get("stop_reason")
    finish = FINISH_FROM_STOP.get(stop_reason, "stop") if stop_reason else None
    usage = usage_from(message.get("usage"))
    completion = {
        "id": message.get("id") or new_id("msg_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or "",
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
        **({"usage": usage_to_openai(usage)} if usage is not None else {}),  # unusable: the relay counts
    }
    return completion, usage, finish


def _tool_call(block: dict) -> dict:
    """A tool_use block as an OpenAI tool call (arguments: its input as a JSON string)."""
    return {
        "id": block.get("id") or new_id("toolu_"),
        "type": "function",
        "function": {"name": block.get("name") or "", "arguments": orjson.dumps(block.get("input") or {}).decode()},
    }


class MessageEvents:
    """Anthropic stream events -> OpenAI chunk objects, as they arrive.

    `feed(name, event)` returns the chunks (each `(object, text)`) one event gives: the role
    chunk at `message_start`, content / reasoning / tool-call deltas, the finish chunk at
    `message_delta`, the usage-only chunk at `message_stop`. `usage` is the running total.
    """

    __slots__ = ("id", "model", "created", "usage", "finish_reason", "is_done", "_raw_usage", "_tools")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.is_done = False
        self._raw_usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, name: str, event: dict) -> list[tuple[dict, str]]:
        kind = event.get("type") or name
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text") or ""
                return [(self._chunk({"content": text}), text)] if text else []
            if dtype == "input_json_delta":
                index = self._tools.get(event.get("index", -1))
                partial = delta.get("partial_json") or ""
                if index is None or not partial:
                    return []
                return [(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": partial}}]}), partial)]
            if dtype == "thinking_delta":
                text = delta.get("thinking") or ""
                return [(self._chunk({"reasoning_content": text}), text)] if text else []
            return []  # signature_delta, citations_delta: nothing OpenAI can carry
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            btype = block.get("type")
            if btype == "tool_use":
                index = self._tools[event.get("index", len(self._tools))] = len(self._tools)
                name_ = block.get("name") or ""
                call = {"index": index, "id": block.get("id") or new_id("toolu_"), "type": "function", "function": {"name": name_, "arguments": ""}}
                return [(self._chunk({"tool_calls": [call]}), name_)]
            if btype == "text" and block.get("text"):
                return [(self._chunk({"content": block["text"]}), block["text"])]
            if btype == "thinking" and block.get("thinking"):
                return [(self._chunk({"reasoning_content": block["thinking"]}), block["thinking"])]
            return []
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or new_id("msg_")
            self.model = message.get("model") or ""
            self._add_usage(message.get("usage"))
            return [(self._chunk({"role": "assistant", "content": ""}), "")]
        if kind == "message_delta":
            self._add_usage(event.get("usage"))
            stop_reason = (event.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self.finish_reason = FINISH_FROM_STOP.get(stop_reason, "stop")
                return [(self._chunk({}, self.finish_reason), "")]
            return []
        if kind == "message_stop":
            self.is_done = True
            if self.usage is None:
                return []
            return [(chunk_object(self.id, self.created, self.model, None, usage=self.usage), "")]
        return []  # ping, content_block_stop, unknown future events

    def _add_usage(self, usage: Any) -> None:
        if usage and isinstance(usage, dict):
            # message_delta counts are cumulative; a field left out keeps message_start's value
            self._raw_usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = usage_from(self._raw_usage)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return chunk_object(self.id, self.created, self.model, delta, finish_reason)


# --- inbound: Anthropic request -> OpenAI ----------------------------------------------------


def from_messages_request(body: dict) -> dict:
    """A Messages request as an OpenAI chat request (already validated for shape)."""
    messages: list[dict] = []
    system = body.get("system")
    if system:
        text = text_of(system, separator="\n")
        if text:
            messages.append({"role": "system", "content": text})
    for message in body.get("messages") or ():
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif role == "assistant":
            messages.append(_openai_assistant(content or []))
        else:
            messages.extend(_openai_user(content or []))

    request: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(theirs) is not None:
            request[ours] = body[theirs]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    user_id = (body.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str) and 0 < len(user_id) <= _MAX_USER_CHARS:
        request["user"] = user_id
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.get("name") or "",
                **({"description": t["description"]} if t.get("description") else {}),
                "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
            },
        }
        for t in body.get("tools") or ()
        if isinstance(t, dict) and t.get("type", "custom") == "custom" and "input_schema" in t
    ]
    if tools:
        request["tools"] = tools
        choice = body.get("tool_choice") or {}
        kind = choice.get("type")
        if kind == "any":
            request["tool_choice"] = "required"
        elif kind == "tool" and choice.get("name"):
            request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif kind == "none":
            request["tool_choice"] = "none"
        elif kind == "auto":
            request["tool_choice"] = "auto"
        if choice.get("disable_parallel_tool_use"):
            request["parallel_tool_calls"] = False
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _openai_user(blocks: list) -> list[dict]:
    """One Anthropic user turn -> OpenAI tool messages (first) and a user message."""
    tool_messages: list[dict] = []
    parts: list[dict] = []
    for block in blocks:
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_openai_image(block.get("source") or {}))
        elif kind == "document":
            parts.append(_openai_document(block))
        elif kind == "tool_result":
            content = block.get("content")
            text = text_of(content, separator="\n")
            if block.get("is_error") and text and not text.lower().startswith("error"):
                text = "Error: " + text
            tool_messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})
            # OpenAI tool messages carry text only: images a tool returned follow as user content
            for item in content if isinstance(content, list) else ():
                if isinstance(item, dict) and item.get("type") == "image":
                    parts.append(_openai_image(item.get("source") or {}))
        # thinking, redacted_thinking, server tool blocks: nothing an OpenAI upstream reads
    result = list(tool_messages)
    if parts:
        if all(p["type"] == "text" for p in parts):
            result.append({"role": "user", "content": "\n".join(p["text"] for p in parts)})
        else:
            result.append({"role": "user", "content": parts})
    return result


def _openai_image(source: dict) -> dict:
    if source.get("type") == "base64":
        url = data_url(source.get("media_type") or "image/png", source.get("data") or "")
    elif source.get("type") == "url":
        url = source.get("url") or ""
    else:
        return _not_passed_on("image", source)
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_document(block: dict) -> dict:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if source.get("type") == "base64":
        media_type = source.get("media_type") or "application/pdf"
        return {
            "type": "file",
            "file": {"filename": block.get("title") or "document.pdf", "file_data": data_url(media_type, source.get("data") or "")},
        }
    return _not_passed_on("document", source)


def _not_passed_on(what: str, source: dict) -> dict:
    # Said in the prompt rather than refused: the same request goes unchanged to an Anthropic
    # upstream (which reads it), and a model told of a missing attachment can say so.
    return {"type": "text", "text": f"[{what} not shown: its source type {source.get('type')!r} cannot be passed to this model]"}


def _openai_assistant(blocks: list) -> dict:
    texts = []
    tool_calls = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


# --- inbound: OpenAI answer -> Anthropic -----------------------------------------------------


def usage_to_anthropic(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens - usage.cache_creation_tokens, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def to_message(completion: dict, *, model: str, message_id: str, usage: Usage | None) -> dict:
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    reply = choice.get("message") or {}
    content: list[dict] = []
    reasoning = reply.get("reasoning_content") or reply.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        # No signature: Anthropic upstreams never see this block again (see docs/protocols.md)
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(reply.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    elif reply.get("refusal"):
        content.append({"type": "text", "text": reply["refusal"]})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {"type": "tool_use", "id": call.get("id") or new_id("toolu_"), "name": function.get("name") or "", "input": json_object(function.get("arguments"))}
        )
    finish = choice.get("finish_reason")
    stop_reason = STOP_FROM_FINISH.get(finish, "end_turn")
    if reply.get("refusal") and not text:
        stop_reason = "refusal"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_to_anthropic(usage or Usage()),
    }


class ChunkEvents:
    """OpenAI chunk objects -> Anthropic stream events (bytes), as they arrive.

    `feed(chunk)` gives the events one chunk makes (opening with `message_start` and a
    `ping`); `finish(usage)` closes the open block and sends `message_delta` and
    `message_stop`; `error(type, message)` is the `error` event. Blocks are strictly
    sequential, as Anthropic's are: a new kind of delta (text, thinking, another tool call)
    closes the block before it.
    """

    __slots__ = ("_id", "_model", "_input_tokens", "_started", "_block", "_open", "_tools", "_stop_reason")

    def __init__(self, *, message_id: str, model: str, input_tokens: int = 0) -> None:
        self._id = message_id
        self._model = model
        self._input_tokens = input_tokens  # the relay's own count: clients read context size here
        self._started = False
        self._block = -1  # index of the last block opened
        self._open: Any = None  # "text" | "thinking" | ("tool", n) | None
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._stop_reason: str | None = None

    @property
    def has_started(self) -> bool:
        return self._started

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # the relay's prompt count now (clients read input tokens only here); the upstream's
            # counts arrive at the end, in message_delta
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return sse_event(b"message_start", {"type": "message_start", "message": message}) + sse_event(b"ping", {"type": "ping"})

    def feed(self, chunk: dict) -> bytes:
        out = [self.start()] if not self._started else []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per message
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.append(self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            content = delta.get("content")
            if isinstance(content, str) and content:
                out.append(self._ensure("text", {"type": "text", "text": ""}))
                out.append(self._delta({"type": "text_delta", "text": content}))
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_delta(call))
            finish = choice.get("finish_reason")
            if finish:
                self._stop_reason = STOP_FROM_FINISH.get(finish, "end_turn")
                out.append(self._close())
        return b"".join(out)

    def finish(self, usage: Usage | None) -> bytes:
        out = [self.start(), self._close()]
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}, "usage": usage_to_anthropic(usage or Usage())}
        out.append(sse_event(b"message_delta", delta))
        out.append(sse_event(b"message_stop", {"type": "message_stop"}))
        return b"".join(out)

    @staticmethod
    def error(error_type: str, message: str) -> bytes:
        return sse_event(b"error", {"type": "error", "error": {"type": error_type, "message": message}})

    def _tool_delta(self, call: dict) -> bytes:
        out = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self._tools:
            out.append(self._close())
            self._block += 1
            self._tools[index] = self._block
            self._open = ("tool", index)
            block = {"type": "tool_use", "id": call.get("id") or new_id("toolu_"), "name": function.get("name") or "", "input": {}}
            out.append(sse_event(b"content_block_start", {"type": "content_block_start", "index": self._block, "content_block": block}))
        arguments = function.get("arguments")
        # A late piece of an earlier (already closed) call cannot be placed: Anthropic's
        # blocks do not interleave. OpenAI-compatible servers send calls one after another.
        if arguments and self._open == ("tool", index):
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return b"".join(out)

    def _ensure(self, kind: str, block: dict) -> bytes:
        if self._open == kind:
            return b""
        closed = self._close()
        self._block += 1
        self._open = kind
        return closed + sse_event(b"content_block_start", {"type": "content_block_start", "index": self._block, "content_block": block})

    def _delta(self, delta: dict) -> bytes:
        return sse_event(b"content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse_event(b"content_block_stop", {"type": "content_block_stop", "index": self._block})
