"""Key policies for the hot path: an in-process cache with a short TTL, emptied explicitly
when a key or tenant changes. With Redis, the change is published so every web process drops
its copy at once; without Redis there is one process and the local drop is enough.

Balances and spending caps are never cached here: they are checked in the database on every
request by billing's reservation, so a stale policy cannot let anyone overspend.
"""

from __future__ import annotations

import asyncio
import logging
import time

from common.db import run_db
from django.conf import settings

from .policy import KeyPolicy

log = logging.getLogger(__name__)

CHANNEL = "tokenhub:keys:invalidate"
_NEGATIVE_TTL_S = 2.0  # unknown keys: cached briefly so a flood of bad keys doesn't hit the DB
_MAX_ENTRIES = 100_000

_entries: dict[str, tuple[float, KeyPolicy | None]] = {}


async def key_policy_aget(*, key_hash: str) -> KeyPolicy | None:
    now = time.monotonic()
    entry = _entries.get(key_hash)
    if entry is not None and entry[0] > now:
        return entry[1]
    from .selectors import key_policy_get

    policy = await run_db(key_policy_get, key_hash=key_hash)
    if len(_entries) >= _MAX_ENTRIES:
        _entries.clear()
    ttl_s = settings.KEY_CACHE_TTL_S if policy is not None else _NEGATIVE_TTL_S
    _entries[key_hash] = (now + ttl_s, policy)
    return policy


def invalidate(*, key_hash: str) -> None:
    _entries.pop(key_hash, None)
    if settings.REDIS_URL:
        try:
            from redis import Redis

            Redis.from_url(settings.REDIS_URL).publish(CHANNEL, key_hash)
        except Exception:  # the TTL still bounds staleness; say so rather than fail the change
            log.warning("could not publish a key invalidation; other processes see it within %ss", settings.KEY_CACHE_TTL_S)


def clear() -> None:
    _entries.clear()


async def listen_for_invalidations() -> None:
    """Runs for the life of a web process when Redis is configured."""
    from redis.asyncio import Redis

    while True:
        try:
            client = Redis.from_url(settings.REDIS_URL)
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        _entries.pop(message["data"].decode(), None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("key invalidation listener lost Redis; retrying in 1s")
            _entries.clear()
            await asyncio.sleep(1.0)
