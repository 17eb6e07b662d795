"""One version of the configuration, shared by every process: a change anywhere is in force
for the very next request everywhere.

    config_changed()         after a change to channels, models, prices, groups, keys or
                             tenants (called by signals and services; runs after commit)
    await config_sync()      once per /v1 request, before anything is read from a cache: if
                             the version moved since this process last looked, every cache
                             that follows the configuration (`config_follow`) is dropped, and
                             the request rebuilds what it needs before routing

Where the version lives: with Redis, a counter (`INCR`; read with `GET`: requests that arrive while
one `GET` is on its way share the next one, so at c=32 a handful of reads serve every request, and
each request still sees a value read after it arrived); on the embedded
default (no Redis), a small file beside the database that each change replaces with a fresh
one stamped with a nanosecond modification time (one `stat` per request: inode and mtime, no
open, no read, no query); web processes on *other machines* that
share a PostgreSQL database without Redis cannot see that file, so they see a change only when
their caches' TTLs run out (the first read logs that: set REDIS_URL). An idle process needs no
timer: it looks at its next request. A change made while a cache is being rebuilt moves the
version again, so the request after it rebuilds once more.

The caches that follow it: the routing table, the rate card, the key policies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.db import connection, transaction

from common import redis as shared_redis

log = logging.getLogger(__name__)

_followers: list[Callable[[], None]] = []
_seen: list[object] = [object()]  # sentinel: the first look always counts as a change
_has_warned: list[bool] = [False]


def config_follow(on_change: Callable[[], None]) -> Callable[[], None]:
    """Call `on_change` (cheap: drop, don't rebuild) whenever the configuration changes."""
    _followers.append(on_change)
    return on_change


def config_changed() -> None:
    """Mark the configuration changed: this process at once, every other one at its next
    request. Inside a transaction this happens after the commit (never before it)."""
    transaction.on_commit(_bump, robust=True)


def _bump() -> None:
    _drop_caches()
    try:
        if settings.REDIS_URL:
            shared_redis.client_sync().incr(_redis_key())
        else:
            path = version_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            scratch.write_text(uuid.uuid4().hex)
            # a fine stamp of our own (the kernel's is coarse, milliseconds): with the inode, it
            # tells two changes apart even when the second one's file reuses the first one's inode
            stamp = time.time_ns()
            os.utime(scratch, ns=(stamp, stamp))
            os.replace(scratch, path)  # atomic: a reader sees the old token or the new one
    except Exception:  # the caches' TTLs still bound staleness; say so rather than fail the change
        log.exception("could not publish a configuration change; other processes see it within their cache TTL")


async def config_sync() -> None:
    version = await _read()
    if version != _seen[0]:
        _seen[0] = version
        _drop_caches()


def _drop_caches() -> None:
    for on_change in _followers:
        on_change()


class _SharedRead:
    """One `GET` of the version at a time per event loop, shared by every request that arrived
    before it was sent. A request that arrives while a `GET` is on its way waits for the next
    one, never for one sent before it arrived: a change committed before a request arrived is
    always seen by it. Each waiter has a future of its own, so one cancelled request (a client
    gone) leaves the others waiting."""

    __slots__ = ("_waiters", "_is_running", "_read")

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future] = []
        self._is_running = False
        self._read = shared_redis.HeldCommand()

    async def get(self) -> object:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._is_running:
            self._is_running = True
            asyncio.get_running_loop().create_task(self._pump())
        return await waiter

    async def _pump(self) -> None:
        try:
            while self._waiters:
                batch, self._waiters = self._waiters, []
                try:
                    value = await self._read.execute("GET", _redis_key())
                except Exception as exc:  # every request of the batch fails as its own GET would have
                    for waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(value)
        finally:
            self._is_running = False


_shared_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedRead] = weakref.WeakKeyDictionary()


async def _read() -> object:
    if settings.REDIS_URL:
        loop = asyncio.get_running_loop()
        shared = _shared_reads.get(loop)
        if shared is None:
            shared = _shared_reads[loop] = _SharedRead()
        return await shared.get()
    if not _has_warned[0] and "sqlite" not in settings.DATABASES["default"]["ENGINE"]:
        _has_warned[0] = True
        log.warning(
            "REDIS_URL is not set: configuration changes (key revocations too) reach the web processes "
            "of this machine at once, through %s, but those of other machines only when their caches "
            "expire; set REDIS_URL when they share this database", version_path(),
        )
    try:
        found = os.stat(version_path())
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_dev)


def _redis_key() -> str:
    return shared_redis.key("config", "version")


_paths: dict[tuple[str, str, str], Path] = {}


def version_path() -> Path:
    """Beside the SQLite file; for another database, in VAR_DIR under the database's name.
    Worked out once per database name (the test runner renames the database)."""
    database = settings.DATABASES["default"]
    cache_key = (str(database["NAME"]), database["ENGINE"], str(settings.VAR_DIR))
    path = _paths.get(cache_key)
    if path is None:
        path = _paths[cache_key] = _version_path()
    return path


def _version_path() -> Path:
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and name not in ("", ":memory:") and not name.startswith("file:"):
        return Path(name + ".config-version")
    return Path(settings.VAR_DIR) / f"config-version-{Path(name).name}"
