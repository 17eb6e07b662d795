"""Request logs leave the hot path through an in-process queue; one thread writes them in
batches every REQUEST_LOG_FLUSH_S and on shutdown. A failed write is retried, never dropped
silently: past MAX_PENDING the oldest are dropped and the count is logged as an error."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque

from django.conf import settings
from django.db import close_old_connections

from common.db import rows_insert

from .logs import access_write

log = logging.getLogger(__name__)

MAX_PENDING = 200_000
BATCH = 500


class BatchWriter:
    instances: list[BatchWriter] = []  # every writer of the process, for shutdown and tests

    def __init__(self, write, *, name: str, flush_s: float) -> None:
        BatchWriter.instances.append(self)
        self._write = write  # callable(list[dict]) -> None
        self._name = name
        self._flush_s = flush_s
        self._pending: deque = deque()
        self._lock = threading.Lock()  # one writer at a time: the thread or an explicit flush
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def submit(self, item) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
            log.error("%s: %d entries dropped, the database is not keeping up", self._name, self.dropped)
        self._pending.append(item)
        if self._thread is None:
            self._start()

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
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                try:
                    self._write(batch)
                except Exception:
                    self._pending.extendleft(reversed(batch))  # keep order; retried next round
                    raise
                written += len(batch)
        return written


def _write_request_logs(batch: list[dict]) -> None:
    from accounts.services import api_keys_touch  # imported late: this module loads before the app registry

    from .models import RequestLog

    rows_insert(RequestLog, batch)
    # Keys' last use moves here, one UPDATE per key per batch, never per request.
    last_used: dict = {}
    for entry in batch:
        key_id, at = entry.get("key_id"), entry.get("created_at")
        if key_id is not None and at is not None and (key_id not in last_used or at > last_used[key_id]):
            last_used[key_id] = at
    if last_used:
        api_keys_touch(last_used_at_by_key=last_used)


def _write_access_lines(batch: list[dict]) -> None:
    for entry in batch:
        access_write(entry)


def flush_all() -> int:
    return sum(writer.flush() for writer in BatchWriter.instances)


def discard_all() -> int:
    return sum(writer.discard() for writer in BatchWriter.instances)


request_logs = BatchWriter(_write_request_logs, name="request-log-writer", flush_s=settings.REQUEST_LOG_FLUSH_S)
access_lines = BatchWriter(_write_access_lines, name="access-log-writer", flush_s=settings.REQUEST_LOG_FLUSH_S)
