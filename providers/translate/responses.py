"""OpenAI's Responses API <-> chat completions, for `/v1/responses` in front of any upstream.

    to_chat_request(body, history)   a Responses request -> a chat request (+ the messages kept
                                     for `previous_response_id`)
    to_response(completion, ...)     a chat.completion -> a Response object
    ResponseEvents                   chat chunk objects -> Responses stream events, as they arrive

What is translated: `input` (a string, or items: messages with `input_text` / `input_image` /
`output_text` parts, `function_call` and `function_call_output`), `instructions` (a system
message first), function `tools` and `tool_choice`, `text.format` (text, json_object,
json_schema -> `response_format`), `max_output_tokens`, `temperature`, `top_p`,
`parallel_tool_calls`, `user`. Built-in tools (web search, file search, computer use, ...) have
no chat equivalent: a 400. `reasoning`, `store`, `metadata`, `include`, `truncation` are
accepted and not sent upstream.

No Django here: the caller keeps the conversation for `previous_response_id`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from providers.base import Usage

from .common import bad_request, new_id, sse_event

__all__ = ["ResponseEvents", "to_chat_request", "to_response", "usage_object"]

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user")


def to_chat_request(body: dict, history: list[dict] | None = None) -> tuple[dict, list[dict]]:
    """The chat request for a Responses request, and the conversation's messages without the
    instructions (what a later `previous_response_id` continues from)."""
    conversation = list(history or ())
    conversation.extend(_input_messages(body.get("input")))
    messages = list(conversation)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    request: dict[str, Any] = {"model": body["model"], "messages": messages}
    for name in _PASSED:
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("max_output_tokens") is not None:
        request["max_tokens"] = body["max_output_tokens"]
    tools = [_tool(tool) for tool in body.get("tools") or ()]
    if tools:
        request["tools"] = tools
    if body.get("tool_choice") is not None:
        request["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(((body.get("text") or {}).get("format")))
    if response_format is not None:
        request["response_format"] = response_format
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}  # the Response's usage needs it
    return request, conversation


def _input_messages(value: Any) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict] = []
    for item in value or ():
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role"))
            if role is None:
                raise bad_request(f"input: unknown role {item.get('role')!r}")
            messages.append({"role": role, "content": _content(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls share one assistant message
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output if isinstance(output, str) else orjson.dumps(output).decode()})
        elif kind == "reasoning":
            continue  # a model's own reasoning from an earlier turn: nothing to send a chat upstream
        else:
            raise bad_request(f"input: items of type {kind!r} are not supported")
    return messages


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise bad_request("input_image: give image_url (a URL or a data: URL); file_id is not supported")
            image = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise bad_request(f"input: content parts of type {kind!r} are not supported")
    return parts


def _tool(tool: dict) -> dict:
    if tool.get("type") != "function":
        raise bad_request(f"tools: built-in tools of type {tool.get('type')!r} are not supported; use function tools")
    function = {"name": tool.get("name")}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise bad_request(f"tool_choice: {choice.get('type')!r} is not supported")


def _response_format(fmt: Any) -> dict | None:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request(f"text.format: {fmt['type']!r} is not supported")


# --- answers ------------------------------------------------------------------------------------


def usage_object(usage: Usage | None) -> dict | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def _envelope(body: dict, *, response_id: str, model: str, created_at: int, status: str, previous_response_id: str | None) -> dict:
    """The fields of a Response that echo the request."""
    text_format = (body.get("text") or {}).get("format") or {"type": "text"}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": previous_response_id,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": {"format": text_format},
        "metadata": body.get("metadata") or {},
        "usage": None,
    }


def _finish(response: dict, finish_reason: str | None) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def _message_item(item_id: str, text: str, status: str) -> dict:
    return {
        "type": "message", "id": item_id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


def to_response(completion: dict, *, body: dict, response_id: str, usage: Usage | None, previous_response_id: str | None) -> dict:
    """A whole chat.completion as a Response."""
    response = _envelope(body, response_id=response_id, model=completion.get("model") or body["model"],
                         created_at=int(completion.get("created") or time.time()), status="completed",
                         previous_response_id=previous_response_id)
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content")
    if isinstance(text, str) and text:
        response["output"].append(_message_item(new_id("msg_"), text, "completed"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        response["output"].append(_call_item(new_id("fc_"), call.get("id") or new_id("call_"), function.get("name") or "",
                                             function.get("arguments") or "", "completed"))
    _finish(response, choice.get("finish_reason"))
    response["usage"] = usage_object(usage)
    return response


def output_messages(response: dict) -> list[dict]:
    """A Response's output as chat messages (kept for a later `previous_response_id`)."""
    text = "".join(part["text"] for item in response["output"] if item["type"] == "message" for part in item["content"])
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in response["output"] if item["type"] == "function_call"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


class ResponseEvents:
    """Chat chunk objects -> Responses stream events (bytes), as they arrive.

    `start()` is `response.created` and `response.in_progress`; `feed(chunk)` the events one
    chunk makes (a message item with one `output_text` part, a `function_call` item per tool
    call, each opened when its first delta arrives); `finish(usage)` closes what is open and
    sends `response.completed` (or `response.incomplete`) with the whole Response, which
    `response` then holds; `error(message)` is the `error` event.
    """

    def __init__(self, *, body: dict, response_id: str, model: str, previous_response_id: str | None) -> None:
        self.response = _envelope(body, response_id=response_id, model=model, created_at=int(time.time()),
                                  status="in_progress", previous_response_id=previous_response_id)
        self._sequence = 0
        self._text_item: dict | None = None  # the open message item: {"index", "id", "text"}
        self._calls: dict[int, dict] = {}  # chat tool-call index -> {"index", "id", "call_id", "name", "arguments"}
        self._finish_reason: str | None = None
        self._next_index = 0

    def _event(self, kind: str, **fields: Any) -> bytes:
        self._sequence += 1
        return sse_event(kind.encode(), {"type": kind, "sequence_number": self._sequence, **fields})

    def start(self) -> bytes:
        return self._event("response.created", response=self.response) + self._event("response.in_progress", response=self.response)

    def feed(self, chunk: dict) -> bytes:
        out: list[bytes] = []
        if chunk.get("model"):
            self.response["model"] = chunk["model"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # a Response has one answer
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.append(self._text(text))
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_delta(call))
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _text(self, text: str) -> bytes:
        out = b""
        if self._text_item is None:
            self._text_item = {"index": self._take_index(), "id": new_id("msg_"), "text": ""}
            item = self._text_item
            out += self._event("response.output_item.added", output_index=item["index"],
                               item={**_message_item(item["id"], "", "in_progress"), "content": []})
            out += self._event("response.content_part.added", item_id=item["id"], output_index=item["index"], content_index=0,
                               part={"type": "output_text", "text": "", "annotations": []})
        item = self._text_item
        item["text"] += text
        return out + self._event("response.output_text.delta", item_id=item["id"], output_index=item["index"], content_index=0, delta=text)

    def _tool_delta(self, call: dict) -> bytes:
        out = b""
        position = call.get("index", 0)
        function = call.get("function") or {}
        state = self._calls.get(position)
        if state is None:
            state = {"index": self._take_index(), "id": new_id("fc_"), "call_id": call.get("id") or new_id("call_"),
                     "name": function.get("name") or "", "arguments": ""}
            self._calls[position] = state
            out += self._event("response.output_item.added", output_index=state["index"],
                               item=_call_item(state["id"], state["call_id"], state["name"], "", "in_progress"))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            state["arguments"] += arguments
            out += self._event("response.function_call_arguments.delta", item_id=state["id"], output_index=state["index"], delta=arguments)
        return out

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def finish(self, usage: Usage | None) -> bytes:
        out: list[tuple[int, bytes]] = []
        if self._text_item is not None:
            item = self._text_item
            done = _message_item(item["id"], item["text"], "completed")
            out.append((item["index"],
                        self._event("response.output_text.done", item_id=item["id"], output_index=item["index"], content_index=0, text=item["text"])
                        + self._event("response.content_part.done", item_id=item["id"], output_index=item["index"], content_index=0, part=done["content"][0])
                        + self._event("response.output_item.done", output_index=item["index"], item=done)))
            self.response["output"].append((item["index"], done))
        for state in self._calls.values():
            done = _call_item(state["id"], state["call_id"], state["name"], state["arguments"], "completed")
            out.append((state["index"],
                        self._event("response.function_call_arguments.done", item_id=state["id"], output_index=state["index"], arguments=state["arguments"])
                        + self._event("response.output_item.done", output_index=state["index"], item=done)))
            self.response["output"].append((state["index"], done))
        self.response["output"] = [item for _index, item in sorted(self.response["output"], key=lambda pair: pair[0])]
        _finish(self.response, self._finish_reason)
        self.response["usage"] = usage_object(usage)
        closing = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        return b"".join(events for _index, events in out) + self._event(closing, response=self.response)

    def error(self, message: str) -> bytes:
        self.response["status"] = "failed"
        self.response["error"] = {"code": "server_error", "message": message}
        return self._event("response.failed", response=self.response)
