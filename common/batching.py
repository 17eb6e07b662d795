"""Calls that arrive while one of their kind is on its way go together in the next one.

`Batched(run_many)` serves one kind of call (opening holds, ending them) per event loop and
group: the first call of an idle group goes at once, alone (a request that comes alone waits
for nobody); calls of the group that arrive while it is on its way wait, and go together as the
next batch as soon as it is back. `run_many(group, items)` answers every item, in order, with
its result or the exception that item raises. Under load this turns N statements, N commits and
N turns at a contended row lock into one (docs/decisions/016-money-calls-in-batches.md).

A cancelled caller stops waiting. An item waiting for a batch still runs with it; an item that
went alone runs in its caller's task, so `run_many` must finish what it started when that task
is cancelled (`common.db.pg_row` does: a money statement is never left half done).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence

from common import background

RunMany = Callable[[Hashable, Sequence], Awaitable[Sequence]]


class Batched:
    __slots__ = ("_run_many", "_limit", "_loops")

    def __init__(self, run_many: RunMany, *, limit: int = 64) -> None:
        self._run_many = run_many
        self._limit = limit
        # per event loop: group -> the calls waiting for the next batch (present while one runs)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()

    async def run(self, group: Hashable, item):
        """`item`'s answer: run alone when its group is idle, else with the next batch."""
        loop = asyncio.get_running_loop()
        waiting = self._loops.get(loop)
        if waiting is None:
            waiting = self._loops[loop] = {}
        queue = waiting.get(group)
        if queue is None:
            waiting[group] = []
            try:
                answer = (await self._run_many(group, (item,)))[0]
            finally:
                self._next(waiting, group)
            if isinstance(answer, BaseException):
                raise answer
            return answer
        future = loop.create_future()
        queue.append((item, future))
        return await future

    def _next(self, waiting: dict, group: Hashable) -> None:
        queue = waiting.get(group)
        if not queue:
            waiting.pop(group, None)
            return
        batch, waiting[group] = queue[: self._limit], queue[self._limit :]
        background.spawn(self._run_batch(waiting, group, batch))

    async def _run_batch(self, waiting: dict, group: Hashable, batch: list) -> None:
        try:
            answers = await self._run_many(group, [item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for a batch of {len(batch)}")
        except Exception as error:  # each caller raises it
            answers = [error] * len(batch)
        except BaseException:  # cancelled (its loop is closing): nobody is left waiting
            for _, future in batch + waiting.pop(group, []):
                future.cancel()
            raise
        try:
            self._answer(batch, answers)
        finally:
            self._next(waiting, group)  # whatever happened, the group never stays busy

    @staticmethod
    def _answer(batch: list, answers: Sequence) -> None:
        for (_, future), answer in zip(batch, answers):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
