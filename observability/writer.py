"""Request logs leave the hot path through an in-process queue, written in batches every
REQUEST_LOG_FLUSH_S and on shutdown. A failed write is retried, never dropped silently: past
MAX_PENDING the oldest are dropped and the count is logged as an error.

Who writes: a thread of the writer's own, or, in a web process on PostgreSQL (the relay's
startup calls `on_loop`), a task of the event loop that writes through the loop's own
connections, so that no second thread fights the event loop for the GIL
(docs/decisions/015-log-writes-on-the-loop.md). `flush()` writes what is pending from any
thread, and waits for a batch the loop is writing."""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections import deque

from django.conf import settings
from django.db import close_old_connections

from common.db import pg_on_loop, rows_ainsert, rows_insert, run_db

from .logs import access_write

log = logging.getLogger(__name__)

MAX_PENDING = 200_000
BATCH = 500
LOOP_BATCH = 100  # the loop writes in slices: each holds it for a few milliseconds at most
IN_FLIGHT_WAIT_S = 10.0


class BatchWriter:
    instances: list[BatchWriter] = []  # every writer of the process, for shutdown and tests

    def __init__(self, write, *, name: str, flush_s: float, awrite=None) -> None:
        BatchWriter.instances.append(self)
        self._write = write  # callable(list[dict]) -> None
        self._awrite = awrite  # async callable(list[dict]) -> None: the event loop's way, or None
        self._name = name
        self._flush_s = flush_s
        self._pending: deque = deque()
        self._lock = threading.Lock()  # one writer at a time: the thread or an explicit flush
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task | None = None
        self._in_flight = 0  # batches the loop is writing (taken from _pending, not yet stored)
        self._landed = threading.Condition()
        self.dropped = 0

    def submit(self, item) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
            log.error("%s: %d entries dropped, the database is not keeping up", self._name, self.dropped)
        self._pending.append(item)
        if self._thread is None and not self._on_a_live_loop():
            self._start()

    def _on_a_live_loop(self) -> bool:
        task = self._task  # a loop that ended without stopping it (a test's, a crash) writes no more
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_s)
            self._wake.clear()
            if not self._pending:
                continue
            try:
                close_old_connections()  # a broken connection is replaced, not retried forever
                self.flush()
            except Exception:
                log.exception("%s: write failed; will retry", self._name)

    def on_loop(self) -> bool:
        """From now on write from the running event loop, if this writer has a way to and the
        database is PostgreSQL (else its thread goes on). Returns whether it does."""
        if self._awrite is None or not pg_on_loop():
            return False
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._arun(), name=self._name)
        return True

    async def aclose(self) -> None:
        """Stop the loop's task (a batch being written is finished first); what is still
        pending is left for `flush()`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _arun(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            try:
                await self._aflush()
            except Exception:  # a cancellation (BaseException) ends the task
                log.exception("%s: write failed; will retry", self._name)

    async def _aflush(self) -> None:
        # what is pending now, not what arrives meanwhile: chasing the tail would write a batch
        # of one or two rows per request under steady load
        left = len(self._pending)
        while left > 0 and self._pending:
            if not self._lock.acquire(blocking=False):
                return  # a flush() in another thread is writing: it takes the rest
            try:
                batch = [self._pending.popleft() for _ in range(min(LOOP_BATCH, left, len(self._pending)))]
                left -= len(batch)
                self._in_flight += 1
            finally:
                self._lock.release()
            try:
                cancelled = await _finish(asyncio.get_running_loop().create_task(self._awrite(batch)))
            except BaseException:
                self._pending.extendleft(reversed(batch))  # keep order; retried next round
                raise
            finally:
                with self._landed:
                    self._in_flight -= 1
                    self._landed.notify_all()
            if cancelled:
                raise asyncio.CancelledError

    def discard(self) -> int:
        """Drop what is pending (tests, between databases)."""
        with self._lock:
            count = len(self._pending)
            self._pending.clear()
        return count

    def flush(self) -> int:
        """Write everything pending now; returns how many were written."""
        written = 0
        with self._lock:
            left = len(self._pending)  # what was pending when the flush began (see _aflush)
            while left > 0 and self._pending:
                batch = [self._pending.popleft() for _ in range(min(BATCH, left, len(self._pending)))]
                left -= len(batch)
                try:
                    self._write(batch)
                except Exception:
                    self._pending.extendleft(reversed(batch))  # keep order; retried next round
                    raise
                written += len(batch)
        if not _on_a_loop():  # what the loop took before this flush is stored before it returns
            with self._landed:
                self._landed.wait_for(lambda: self._in_flight == 0, IN_FLIGHT_WAIT_S)
        return written


async def _finish(write: asyncio.Task) -> bool:
    """Await `write` to its end even if the caller is cancelled meanwhile (a batch is stored
    whole or put back whole, never both); returns whether the caller was cancelled. The
    write's own error is raised."""
    cancelled = False
    while not write.done():
        try:
            await asyncio.wait({write})
        except asyncio.CancelledError:
            cancelled = True
    write.result()
    return cancelled


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _write_request_logs(batch: list[dict]) -> None:
    from accounts.services import api_keys_touch  # imported late: this module loads before the app registry

    from .models import RequestLog

    rows_insert(RequestLog, batch)
    last_used = _last_used(batch)
    if last_used:
        api_keys_touch(last_used_at_by_key=last_used)


async def _awrite_request_logs(batch: list[dict]) -> None:
    from accounts.services import api_keys_touch

    from .models import RequestLog

    await rows_ainsert(RequestLog, batch)
    last_used = _last_used(batch)
    if last_used:
        await run_db(api_keys_touch, last_used_at_by_key=last_used)


def _last_used(batch: list[dict]) -> dict:
    """Keys' last use moves with the logs, one UPDATE per key per batch, never per request."""
    last_used: dict = {}
    for entry in batch:
        key_id, at = entry.get("key_id"), entry.get("created_at")
        if key_id is not None and at is not None and (key_id not in last_used or at > last_used[key_id]):
            last_used[key_id] = at
    return last_used


def _write_access_lines(batch: list[dict]) -> None:
    for entry in batch:
        access_write(entry)


async def _awrite_access_lines(batch: list[dict]) -> None:
    _write_access_lines(batch)  # no database: formatting and the handlers' writes, as uvicorn's own access log


def writers_on_loop() -> list[str]:
    """Every writer that can, writes from the running event loop from now on (the relay's
    startup); returns their names."""
    return [writer._name for writer in BatchWriter.instances if writer.on_loop()]


async def writers_aclose() -> None:
    for writer in BatchWriter.instances:
        await writer.aclose()


def flush_all() -> int:
    return sum(writer.flush() for writer in BatchWriter.instances)


def discard_all() -> int:
    return sum(writer.discard() for writer in BatchWriter.instances)


request_logs = BatchWriter(
    _write_request_logs, awrite=_awrite_request_logs, name="request-log-writer", flush_s=settings.REQUEST_LOG_FLUSH_S
)
access_lines = BatchWriter(
    _write_access_lines, awrite=_awrite_access_lines, name="access-log-writer", flush_s=settings.REQUEST_LOG_FLUSH_S
)
