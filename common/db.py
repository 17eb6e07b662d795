"""Database work from async code (the /v1 path). Django's request signals, which normally
recycle connections, don't fire on our lean /v1 app, so each call first drops its thread's
connection if it broke or outlived CONN_MAX_AGE: a restarted database costs one failed
request per thread, not every request after it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

log = logging.getLogger(__name__)

# as many threads as asyncio's default executor has (each keeps its own connection), but our
# own: DNS lookups and to_thread work never queue in front of a settle
DB_THREADS = min(32, (os.cpu_count() or 1) + 4)
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="db")
    return _pool


def db_threads_disconnect() -> None:
    """Close the connection each of run_db's threads keeps (before its database is dropped:
    tests). One job per thread: each waits at a barrier until all threads hold one."""
    if _pool is None:
        return
    barrier = threading.Barrier(DB_THREADS)

    def close() -> None:
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        connections.close_all()

    for future in [_pool.submit(close) for _ in range(DB_THREADS)]:
        future.result()


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def _fresh(fn, kwargs):
    close_old_connections()
    return fn(**kwargs)


def _left_behind(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("database work whose caller went away failed: %s", type(future.exception()).__name__)


async def run_db(fn, /, **kwargs):
    """Run `fn(**kwargs)` in a worker thread, in a copy of the caller's context (the log's request
    id binds there too). Each call is a whole unit of work (its own transaction), so calls from
    concurrent requests run side by side. A cancelled caller stops waiting but the work still
    runs to its end in its thread: no transaction is left half done, no settle is dropped.

    A plain run_in_executor on our own pool: asgiref's sync_to_async (what this was) does the
    same with more per call (bench/db_hop.py; docs/decisions/011-money-path-in-one-round-trip.md)."""
    future = asyncio.get_running_loop().run_in_executor(_executor(), contextvars.copy_context().run, _fresh, fn, kwargs)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_left_behind)
        raise


def delete_in_batches(queryset, *, batch: int = 5000) -> int:
    """Delete what `queryset` selects in batches by primary key, so that a large backlog never
    holds one long lock. Returns the count Django's `delete()` gives."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
