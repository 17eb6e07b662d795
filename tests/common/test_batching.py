"""`Batched`: a call of an idle group goes at once and alone; calls of the group that arrive while
one is on its way go together, in arrival order, in the next batch; each caller gets its own
answer or error; a cancelled caller's waiting item still runs; groups never mix."""

import asyncio

import pytest

from common.batching import Batched


class Recorder:
    """A `run_many` that records each batch and answers after `release` is set (per batch)."""

    def __init__(self):
        self.batches: list[tuple] = []
        self.gates: list[asyncio.Event] = []

    async def __call__(self, group, items):
        gate = asyncio.Event()
        self.batches.append((group, list(items)))
        self.gates.append(gate)
        await gate.wait()
        return [ValueError(f"bad {item}") if str(item).startswith("bad") else f"{group}:{item}" for item in items]

    async def open_next(self, count: int = 1):
        """Let every batch asked for answer, until `count` batches have been asked for."""
        for _ in range(1000):
            for gate in self.gates:
                gate.set()
            if len(self.gates) >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"{count} batches were expected, {len(self.gates)} came")


async def one_on_its_way(**options):
    """A `Batched` over a `Recorder`, with the call ("g", 1) on its way."""
    run_many = Recorder()
    batched = Batched(run_many, **options)
    first = asyncio.ensure_future(batched.run("g", 1))
    await asyncio.sleep(0)
    return run_many, batched, first


def test_a_call_alone_goes_at_once_and_those_arriving_meanwhile_go_together_in_order():
    async def main():
        run_many, batched, first = await one_on_its_way()
        assert run_many.batches == [("g", [1])]  # not held back for company
        rest = [asyncio.ensure_future(batched.run("g", n)) for n in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert len(run_many.batches) == 1  # they wait for the first to come back
        await run_many.open_next(2)
        answers = await asyncio.gather(first, *rest)
        assert answers == ["g:1", "g:2", "g:3", "g:4"]
        assert run_many.batches == [("g", [1]), ("g", [2, 3, 4])]
        # idle again: the next call goes alone, at once
        last = asyncio.ensure_future(batched.run("g", 5))
        await run_many.open_next(3)
        assert await last == "g:5"
        assert run_many.batches[-1] == ("g", [5])

    asyncio.run(main())


def test_groups_never_share_a_batch_and_do_not_wait_for_each_other():
    async def main():
        run_many = Recorder()
        batched = Batched(run_many)
        a1 = asyncio.ensure_future(batched.run("a", 1))
        b1 = asyncio.ensure_future(batched.run("b", 1))
        await asyncio.sleep(0)
        assert sorted(run_many.batches) == [("a", [1]), ("b", [1])]  # both on their way at once
        a2 = asyncio.ensure_future(batched.run("a", 2))
        b2 = asyncio.ensure_future(batched.run("b", 2))
        await run_many.open_next(4)
        assert await asyncio.gather(a1, b1, a2, b2) == ["a:1", "b:1", "a:2", "b:2"]
        assert sorted(run_many.batches) == [("a", [1]), ("a", [2]), ("b", [1]), ("b", [2])]

    asyncio.run(main())


def test_an_items_error_reaches_its_caller_only():
    async def main():
        run_many, batched, first = await one_on_its_way()
        calls = [asyncio.ensure_future(batched.run("g", item)) for item in (2, "bad-3", 4)]
        await run_many.open_next(2)
        assert await first == "g:1"
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert results[0] == "g:2" and results[2] == "g:4"
        assert isinstance(results[1], ValueError) and str(results[1]) == "bad bad-3"
        alone = asyncio.ensure_future(batched.run("g", "bad-5"))
        await run_many.open_next(3)
        with pytest.raises(ValueError, match="bad bad-5"):
            await alone

    asyncio.run(main())


async def _raises(items):
    raise ConnectionError("the database went away")


async def _answers_short(items):
    return [f"ok {item}" for item in items][:1]  # one answer, whatever the batch


@pytest.mark.parametrize(
    "misbehave, error, message",
    [(_raises, ConnectionError, "the database went away"), (_answers_short, RuntimeError, "1 answers for a batch of 2")],
    ids=["raises", "answers-short"],
)
def test_a_batch_that_fails_as_a_whole_fails_each_of_its_callers_and_the_group_goes_on(misbehave, error, message):
    async def main():
        seen = []

        async def run_many(group, items):
            seen.append(list(items))
            await asyncio.sleep(0.01)
            return await misbehave(items) if len(items) > 1 else [f"ok {item}" for item in items]

        batched = Batched(run_many)
        first = asyncio.ensure_future(batched.run("g", 1))
        await asyncio.sleep(0)
        others = [asyncio.ensure_future(batched.run("g", n)) for n in (2, 3)]
        assert await first == "ok 1"
        results = await asyncio.gather(*others, return_exceptions=True)
        assert [type(r) for r in results] == [error, error]
        assert message in str(results[0])
        assert await asyncio.wait_for(batched.run("g", 4), 5) == "ok 4"  # the group never stays busy
        assert seen == [[1], [2, 3], [4]]

    asyncio.run(main())


def test_a_cancelled_callers_item_still_runs_and_the_others_get_their_answers():
    async def main():
        run_many, batched, first = await one_on_its_way()
        second = asyncio.ensure_future(batched.run("g", 2))
        third = asyncio.ensure_future(batched.run("g", 3))
        await asyncio.sleep(0)
        second.cancel()
        first.cancel()  # the one on its way (its own run_many finishes it): the waiting ones still go
        await run_many.open_next(2)
        assert await third == "g:3"
        assert second.cancelled() and first.cancelled()
        assert run_many.batches == [("g", [1]), ("g", [2, 3])]

    asyncio.run(main())


def test_a_batch_holds_at_most_the_limit():
    async def main():
        run_many, batched, first = await one_on_its_way(limit=3)
        rest = [asyncio.ensure_future(batched.run("g", n)) for n in range(2, 9)]
        for count in (2, 3, 4):
            await run_many.open_next(count)
        assert await asyncio.gather(first, *rest) == [f"g:{n}" for n in range(1, 9)]
        assert [items for _, items in run_many.batches] == [[1], [2, 3, 4], [5, 6, 7], [8]]

    asyncio.run(main())
