"""Key policies for the hot path: an in-process cache with a short TTL (KEY_CACHE_TTL_S), emptied
when a key or tenant changes, in every web process at once.

One mechanism does the emptying: the configuration version (`common.config_version`). A change
to a key or a tenant moves the version after it commits (signals, and the services that write
with `update()`); each /v1 request syncs the version before it authenticates, and a process
that sees it moved drops this cache with the others that follow the configuration. The version
lives in Redis when REDIS_URL is set, or in a file beside the database on the embedded default,
so a revocation is refused by the very next request of every web process that shares it.

Balances and spending caps are never cached here: they are checked in the database on every
request by billing's reservation, so a stale policy cannot let anyone overspend.
"""

from __future__ import annotations

import time

from django.conf import settings

from common.config_version import config_changed, config_follow
from common.db import run_db

from .policy import KeyPolicy
from .selectors import key_policy_get

_NEGATIVE_TTL_S = 2.0  # unknown keys: cached briefly so a flood of bad keys doesn't hit the DB
_MAX_ENTRIES = 100_000

_entries: dict[str, tuple[float, KeyPolicy | None]] = {}


async def key_policy_aget(*, key_hash: str) -> KeyPolicy | None:
    now = time.monotonic()
    entry = _entries.get(key_hash)
    if entry is not None and entry[0] > now:
        return entry[1]
    policy = await run_db(key_policy_get, key_hash=key_hash)
    if len(_entries) >= _MAX_ENTRIES:
        _entries.clear()
    ttl_s = settings.KEY_CACHE_TTL_S if policy is not None else _NEGATIVE_TTL_S
    _entries[key_hash] = (now + ttl_s, policy)
    return policy


def invalidate(*, key_hash: str) -> None:
    """This process drops the key's policy now; every process (this one again) once the current
    transaction commits, through the configuration version."""
    _entries.pop(key_hash, None)
    config_changed()


def clear() -> None:
    _entries.clear()


config_follow(clear)

