"""Key policies for the hot path: an in-process cache with a short TTL, emptied explicitly
when a key or tenant changes, in every web process at once:

- with Redis, the change is published and each process's listener drops its copy;
- without Redis, the change rewrites a small stamp file beside the data (VAR_DIR, one per
  database) and each lookup stats it (one system call, no database query, no thread hop):
  a process that sees a new stamp empties its cache. Web processes on *other machines* sharing a
  PostgreSQL database without Redis cannot see that file; they need REDIS_URL (the first lookup logs that).

The drop happens after the change commits, so no process can re-read the old row in between.
Balances and spending caps are never cached here: they are checked in the database on every
request by billing's reservation, so a stale policy cannot let anyone overspend.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from common import redis as shared_redis
from common.config_version import config_follow
from common.db import run_db

from .policy import KeyPolicy

log = logging.getLogger(__name__)

_NEGATIVE_TTL_S = 2.0  # unknown keys: cached briefly so a flood of bad keys doesn't hit the DB
_MAX_ENTRIES = 100_000

_entries: dict[str, tuple[float, KeyPolicy | None]] = {}
_seen_stamp: tuple[int, ...] | None = None
_has_warned = False


_paths: dict[str, Path] = {}


def stamp_path() -> Path:
    """The stamp file of this database (embedded runs and tests keep several side by side)."""
    database = settings.DATABASES["default"]
    name = f"{database.get('HOST', '')}:{database.get('PORT', '')}/{database['NAME']}"
    path = _paths.get(name)
    if path is None:
        path = _paths[name] = Path(settings.VAR_DIR) / f"keycache-{hashlib.sha256(name.encode()).hexdigest()[:16]}.stamp"
    return path


def _stamp_read() -> tuple[int, ...]:
    """The stamp's identity: one stat call (a read costs several times more). Each bump is a new
    file put in place atomically, so its inode differs from the one it replaces; its random
    length and its time tell apart the rare reuse of an older inode."""
    try:
        found = os.stat(stamp_path())
    except FileNotFoundError:
        return ()
    return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _stamp_bump() -> None:
    path = stamp_path()
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(os.urandom(8 + os.urandom(1)[0] % 32))
    os.replace(temporary, path)  # atomic: a reader sees the old stamp or the new, never half


def _drop_if_stamp_moved() -> None:
    global _seen_stamp, _has_warned
    if not _has_warned and settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        _has_warned = True
        log.warning(
            "REDIS_URL is not set: key revocations reach the web processes of this machine at once "
            "(through %s), but web processes on other machines only after KEY_CACHE_TTL_S=%ss; "
            "set REDIS_URL when they share this database",
            stamp_path(), settings.KEY_CACHE_TTL_S,
        )
    stamp = _stamp_read()
    if stamp != _seen_stamp:
        _entries.clear()
        _seen_stamp = stamp


async def key_policy_aget(*, key_hash: str) -> KeyPolicy | None:
    if not settings.REDIS_URL:
        _drop_if_stamp_moved()
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
    """This process drops the key's policy now; every process (this one again) once the current
    transaction commits."""
    _entries.pop(key_hash, None)
    transaction.on_commit(lambda: _broadcast(key_hash))


def _channel() -> str:
    return shared_redis.key("keys", "invalidate")


def _broadcast(key_hash: str) -> None:
    _entries.pop(key_hash, None)
    if not settings.REDIS_URL:
        _stamp_bump()
        return
    try:
        shared_redis.client_sync().publish(_channel(), key_hash)
    except Exception:  # the TTL still bounds staleness; say so rather than fail the change
        log.warning("could not publish a key invalidation; other processes see it within %ss", settings.KEY_CACHE_TTL_S)


def clear() -> None:
    _entries.clear()


config_follow(clear)


async def listen_for_invalidations() -> None:
    """Runs for the life of a web process when Redis is configured."""
    while True:
        try:
            async with shared_redis.client_async().pubsub() as pubsub:
                await pubsub.subscribe(_channel())
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        _entries.pop(message["data"].decode(), None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("key invalidation listener lost Redis; retrying in 1s")
            _entries.clear()
            await asyncio.sleep(1.0)
