"""Usage reports from upstreams, parsed and never trusted. No Django here.

An upstream's usage object is data from the outside: every count in it is checked before the
relay bills on it.

    a count is a plain non-negative JSON integer, at most MAX_TOKENS
    (a string, float, bool, null, list, object, negative or absurd value is not a count)

    prompt or completion not a count   -> the whole report is missing (None): the relay counts
                                          the prompt and the text it delivered instead
    cached / cache-write not a count   -> 0
    cached above prompt                -> clamped to prompt
    cache-write above prompt - cached  -> clamped to what is left

One function per wire format (`usage_from_openai`, `usage_from_responses`,
`usage_from_anthropic`, `usage_from_gemini`); each returns a `Usage` or None and never raises,
whatever it is given.
"""

from __future__ import annotations

from typing import Any

from .base import Usage

__all__ = [
    "MAX_TOKENS",
    "token_count",
    "usage_build",
    "usage_from_anthropic",
    "usage_from_gemini",
    "usage_from_openai",
    "usage_from_responses",
]

# No model reads or writes this many tokens in one request (the largest context windows are a
# few million): a bigger number is a broken or lying report, not a bill.
MAX_TOKENS = 100_000_000

_ABSENT = object()


def token_count(value: Any) -> int | None:
    """`value` as a token count, or None when it is not one."""
    if type(value) is not int:  # bool is a subclass of int: excluded; floats too, even 12.0
        return None
    if value < 0 or value > MAX_TOKENS:
        return None
    return value


def usage_build(*, prompt: Any, completion: Any, cached: Any = 0, cache_write: Any = 0, extra_prompt: Any = 0, extra_completion: Any = 0) -> Usage | None:
    """A checked Usage from raw values, or None when prompt or completion is not a count.
    `extra_*` are optional additions (e.g. Gemini's thoughts): not a count -> 0."""
    prompt_tokens = token_count(prompt)
    completion_tokens = token_count(completion)
    if prompt_tokens is None or completion_tokens is None:
        return None
    prompt_tokens = min(MAX_TOKENS, prompt_tokens + (token_count(extra_prompt) or 0))
    completion_tokens = min(MAX_TOKENS, completion_tokens + (token_count(extra_completion) or 0))
    cached_tokens = min(token_count(cached) or 0, prompt_tokens)
    written_tokens = min(token_count(cache_write) or 0, prompt_tokens - cached_tokens)
    return Usage(prompt_tokens, completion_tokens, cached_tokens, written_tokens)


def _get(obj: Any, key: str, default: Any = _ABSENT) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return default


def usage_from_openai(obj: Any, *, has_completion: bool = True) -> Usage | None:
    """OpenAI's `usage` (chat, completions, embeddings; DeepSeek and OpenRouter variants).
    Embeddings (`has_completion=False`) report no completion: absent counts as 0 there."""
    if not isinstance(obj, dict):
        return None
    details = _get(obj, "prompt_tokens_details", None)
    cached = _get(details, "cached_tokens", None)
    if cached is None:
        cached = obj.get("prompt_cache_hit_tokens", 0)  # DeepSeek's name for the same
    return usage_build(
        prompt=obj.get("prompt_tokens", _ABSENT),
        completion=obj.get("completion_tokens", _ABSENT if has_completion else 0),
        cached=cached,
        cache_write=_get(details, "cache_write_tokens", 0),  # OpenRouter's; our Anthropic translation fills it
    )


def usage_from_responses(obj: Any) -> Usage | None:
    """OpenAI's Responses API `usage`: `input_tokens` (cache reads included, as
    `input_tokens_details.cached_tokens`) and `output_tokens`, which include the reasoning
    tokens (`output_tokens_details.reasoning_tokens`): output is never billed below its own
    reasoning part, whatever an upstream that counts them apart reports."""
    if not isinstance(obj, dict):
        return None
    output = token_count(obj.get("output_tokens", _ABSENT))
    reasoning = token_count(_get(_get(obj, "output_tokens_details", None), "reasoning_tokens", 0)) or 0
    return usage_build(
        prompt=obj.get("input_tokens", _ABSENT),
        completion=max(output, reasoning) if output is not None else None,
        cached=_get(_get(obj, "input_tokens_details", None), "cached_tokens", 0),
    )


def usage_from_anthropic(obj: Any) -> Usage | None:
    """Anthropic's usage: input_tokens leave out cache reads and writes; ours include them."""
    if not isinstance(obj, dict):
        return None
    read = token_count(obj.get("cache_read_input_tokens", 0)) or 0
    written = token_count(obj.get("cache_creation_input_tokens", 0)) or 0
    input_tokens = token_count(obj.get("input_tokens", _ABSENT))
    if input_tokens is None:
        return None
    return usage_build(prompt=min(MAX_TOKENS, input_tokens + read + written), completion=obj.get("output_tokens", _ABSENT), cached=read, cache_write=written)


def usage_from_gemini(obj: Any) -> Usage | None:
    """Gemini's usageMetadata: promptTokenCount includes cached content; thoughts are billed as
    output. Gemini leaves out a zero candidatesTokenCount, so absent is 0 there (null is not)."""
    if not isinstance(obj, dict):
        return None
    return usage_build(
        prompt=obj.get("promptTokenCount", _ABSENT),
        completion=obj.get("candidatesTokenCount", 0),
        cached=obj.get("cachedContentTokenCount", 0),
        extra_prompt=obj.get("toolUsePromptTokenCount", 0),
        extra_completion=obj.get("thoughtsTokenCount", 0),
    )
