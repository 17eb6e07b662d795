"""Per-key RPM and TPM limits in fixed one-minute windows: in Redis when configured (shared
by every web process, atomic INCR), in process memory otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from common import redis as shared_redis

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the window ends


class _LocalCounters:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], tuple[int, int]] = {}

    async def add(self, kind: str, key_id: int, amount: int, window: int) -> int:
        current_window, count = self._counts.get((kind, key_id), (window, 0))
        if current_window != window:
            count = 0
        count += amount
        self._counts[(kind, key_id)] = (window, count)
        return count

    async def get(self, kind: str, key_id: int, window: int) -> int:
        current_window, count = self._counts.get((kind, key_id), (window, 0))
        return count if current_window == window else 0

    def clear(self) -> None:
        self._counts.clear()


class _RedisCounters:
    async def add(self, kind: str, key_id: int, amount: int, window: int) -> int:
        name = shared_redis.key(kind, key_id, window)
        async with shared_redis.client_async().pipeline(transaction=False) as pipe:
            pipe.incrby(name, amount)
            pipe.expire(name, WINDOW_S * 2)
            count, _ = await pipe.execute()
        return int(count)

    async def get(self, kind: str, key_id: int, window: int) -> int:
        value = await shared_redis.client_async().get(shared_redis.key(kind, key_id, window))
        return int(value or 0)

    def clear(self) -> None:
        pass


counters = _RedisCounters() if settings.REDIS_URL else _LocalCounters()


def _window() -> tuple[int, float]:
    now = time.time()
    return int(now // WINDOW_S), WINDOW_S - (now % WINDOW_S)


async def rpm_hit(*, key_id: int, rpm: int) -> Verdict:
    """Count one request; refused when it would be over the limit."""
    window, reset_s = _window()
    count = await counters.add("rpm", key_id, 1, window)
    return Verdict(count <= rpm, rpm, max(0, rpm - count), reset_s)


async def tpm_check(*, key_id: int, tpm: int) -> Verdict:
    """Whether the key has tokens left this minute (tokens are counted after each request)."""
    window, reset_s = _window()
    used = await counters.get("tpm", key_id, window)
    return Verdict(used < tpm, tpm, max(0, tpm - used), reset_s)


async def tpm_add(*, key_id: int, tokens: int) -> None:
    if tokens > 0:
        window, _ = _window()
        await counters.add("tpm", key_id, tokens, window)
