"""A value read from the database into process memory, for the hot path.

Served as it is until it is older than its TTL; then it is rebuilt in the background while
requests keep getting the old one. `invalidate()` (after a local change) makes the next reader
rebuild first, and every reader that comes while that rebuild runs waits for it too (none gets
the value the change made old). The routing table, the rate card and the Thompson arms are such
values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Generic, TypeVar

from .db import run_db

log = logging.getLogger(__name__)
T = TypeVar("T")


class Snapshot(Generic[T]):
    def __init__(
        self, build: Callable[[], T], *, ttl_s: Callable[[], float], name: str, on_load: Callable[[T], None] | None = None
    ) -> None:
        self._build = build
        self._ttl_s = ttl_s  # read at each use, so a setting changed at run time (tests) applies
        self._name = name
        self._on_load = on_load
        self._value: T | None = None
        self._loaded_at = 0.0
        self._is_stale = True
        self._refreshing: asyncio.Task | None = None
        self._rebuilding: dict[int, asyncio.Task] = {}  # event loop id -> the forced rebuild readers wait for
        self._generation = 0  # moves on invalidate(): a build begun before it is not installed

    def _is_old(self) -> bool:
        return time.monotonic() - self._loaded_at > self._ttl_s()

    def _install(self, value: T) -> T:
        if self._on_load is not None:
            self._on_load(value)
        self._value, self._loaded_at = value, time.monotonic()
        return value

    async def aget(self) -> T:
        value = self._value
        if value is not None and not self._is_stale and not self._rebuilding:
            # the common case, without asking for the running loop (a getpid() each on 3.11)
            if self._refreshing is None and self._is_old():
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            return value
        loop_id = id(asyncio.get_running_loop())
        if value is None or self._is_stale or loop_id in self._rebuilding:
            task = self._rebuilding.get(loop_id)
            if task is None:
                self._is_stale = False
                task = self._rebuilding[loop_id] = asyncio.get_running_loop().create_task(self._rebuild_now(loop_id))
            return await asyncio.shield(task)
        if self._refreshing is None and self._is_old():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return value

    async def _rebuild_now(self, loop_id: int) -> T:
        try:
            return self._install(await run_db(self._build))
        except BaseException:
            self._is_stale = True  # the next reader tries again
            raise
        finally:
            self._rebuilding.pop(loop_id, None)

    def get(self) -> T:
        """From synchronous code (admin, commands): rebuilt in place when old."""
        value = self._value
        if value is None or self._is_stale or self._is_old():
            self._is_stale = False
            value = self._install(self._build())
        return value

    async def _refresh(self) -> None:
        generation = self._generation
        try:
            value = await run_db(self._build)
            if generation == self._generation:  # else a change came meanwhile: this build may predate it
                self._install(value)
        except Exception:
            log.exception("%s refresh failed; keeping the previous one", self._name)
        finally:
            self._refreshing = None

    def invalidate(self) -> None:
        self._is_stale = True
        self._generation += 1

    def forget(self) -> None:
        self._value = None
