"""Helpers every translation needs: OpenAI usage and chunk objects, data URLs, text of content."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from providers.base import ErrorKind, ProviderError, Usage

__all__ = [
    "bad_request",
    "chunk_object",
    "data_url",
    "json_object",
    "new_id",
    "parse_data_url",
    "sse_event",
    "text_of",
    "usage_to_openai",
]


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object; cache writes (Anthropic) go in
    `prompt_tokens_details.cache_write_tokens`, OpenAI's (and OpenRouter's) field for them,
    which `providers.openai.parse_usage` reads back."""
    details: dict[str, int] = {"cached_tokens": usage.cached_tokens}
    if usage.cache_creation_tokens:
        details["cache_write_tokens"] = usage.cache_creation_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": details,
    }


def chunk_object(
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    *,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` gives the usage-only chunk (`choices: []`)."""
    obj: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        obj["usage"] = usage_to_openai(usage)
    return obj


def sse_event(name: bytes, obj: Any) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url.partition(",")
    if not comma or ";base64" not in header:
        return None
    media_type = header[5:].split(";", 1)[0] or "application/octet-stream"
    return media_type, data


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def text_of(content: Any, *, separator: str = "") -> str:
    """The text of OpenAI or Anthropic content: a string, or the text of its text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(part.get("text") or "")
            elif isinstance(part, dict) and part.get("type") == "refusal":
                texts.append(part.get("refusal") or "")
        return separator.join(texts)
    return str(content)


def json_object(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string in OpenAI) as an object; {} when not one."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def bad_request(message: str) -> ProviderError:
    """A request this protocol cannot express: the client's to fix, no failover."""
    return ProviderError(ErrorKind.BAD_REQUEST, message, status=400, code="unsupported_by_upstream")
