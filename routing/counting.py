"""Prompt token counting on the hot path, so that no tenant can starve the process.

    await prompt_tokens_acount(request, body_size=...) -> int

- A small body (up to INLINE_MAX_BYTES) is counted inline: cheaper than a thread hop.
- A larger one is counted exactly in this module's own pool of TOKEN_COUNT_THREADS threads,
  never the default executor that database calls (`common.db.run_db`) use: a tenant sending
  long prompts waits for the tokenizer, everybody else's queries do not.
- Above TOKEN_COUNT_EXACT_MAX_BYTES the tokenizer is not run at all: the count is estimated by
  length, one token per two bytes of body. That is an upper bound for ordinary text (English
  averages about four bytes a token, CJK about three), so a hold based on it covers the
  request; the upstream's reported usage still decides the charge.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from providers import tokens

__all__ = ["INLINE_MAX_BYTES", "prompt_tokens_acount", "prompt_tokens_by_length"]

INLINE_MAX_BYTES = 16 * 1024  # about 50 µs of tokenizer time: less than a hop to a thread
BYTES_PER_TOKEN_BOUND = 2

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, settings.TOKEN_COUNT_THREADS), thread_name_prefix="token-count")
    return _pool


def prompt_tokens_by_length(body_size: int) -> int:
    return -(-body_size // BYTES_PER_TOKEN_BOUND)


async def prompt_tokens_acount(request: dict, *, body_size: int) -> int:
    if body_size > settings.TOKEN_COUNT_EXACT_MAX_BYTES:
        return prompt_tokens_by_length(body_size)
    if body_size <= INLINE_MAX_BYTES:
        return tokens.estimate_request_prompt_tokens(request)
    return await asyncio.get_running_loop().run_in_executor(_executor(), tokens.estimate_request_prompt_tokens, request)
