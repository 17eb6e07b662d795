"""Counting attempts in fixed windows, to slow down guessing (redemption codes).

Counters live in Django's cache: Redis when REDIS_URL is set (shared by every web process,
atomic INCR), process memory otherwise (the embedded default's one process)."""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def attempt_count(*, scope: str, ident: str, window_s: int) -> int:
    """Count one attempt of `ident` (a user id, an address) in the current window; returns the
    count including this one."""
    window = int(time.time() // window_s)
    # hashed: an address or id never appears as such in a cache key
    key = f"attempts:{scope}:{hashlib.sha256(ident.encode()).hexdigest()[:32]}:{window}"
    cache.add(key, 0, timeout=window_s + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_s + 1)
        return 1


def attempts_retry_after_s(*, window_s: int) -> int:
    return max(1, int(window_s - time.time() % window_s))
