"""Work that must finish even when the request that started it is gone (settling a stream
whose client disconnected). Tasks are kept referenced until done and awaited on shutdown."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)
_tasks: set[asyncio.Task] = set()


def spawn(coro) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def pending() -> int:
    """How many tasks are still running (tests wait for none before reading what they settled)."""
    return sum(not task.done() for task in list(_tasks))


async def drain(timeout_s: float = 30.0) -> None:
    pending = [t for t in _tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
