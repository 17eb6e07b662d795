"""The batched log writers: on PostgreSQL a web process's event loop writes the logs itself
(no writer thread fights it for the GIL); elsewhere a thread does. Either way a flush takes
what was pending when it began, never a batch of one or two rows per request under steady
load; a failed batch is retried and nothing is lost or stored twice; stopping the loop's
writer finishes the batch it was writing; `flush()` from another thread returns only once
what the loop had taken is stored."""

import asyncio
import threading
import time
from datetime import datetime, timezone

import pytest
from django.db import connection

from common.db import db_threads_disconnect, loop_connections_close
from observability.models import RequestLog, RewardLog
from observability.services import log_writers_aclose, log_writers_on_loop, request_log_submit, reward_logs_awrite, reward_logs_write
from observability.writer import BatchWriter

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True, scope="module")
def _connections_closed():
    """The loops' connections and the database threads': closed before the test database is
    dropped (a writer thread's own connection is closed with the session's relay server)."""
    yield
    loop_connections_close()
    db_threads_disconnect()


@pytest.fixture
def make_writer():
    made = []

    def make(write, awrite, flush_s=0.05, name="test-writer"):
        writer = BatchWriter(write, awrite=awrite, name=name, flush_s=flush_s)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        BatchWriter.instances.remove(writer)


def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the loop writes on PostgreSQL only")


def reward(request_id: str, attempt: int = 1) -> dict:
    return {"request_id": request_id, "attempt": attempt, "channel_id": 1, "model": "m", "outcome": "ok", "reward": 1.0, "created_at": NOW}


def writer_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


def test_on_postgresql_the_loop_writes_the_rows_and_no_thread_is_started(make_writer):
    postgresql_only()
    writer = make_writer(
        lambda batch: reward_logs_write(entries=batch), lambda batch: reward_logs_awrite(entries=batch), name="rewards-on-loop"
    )

    async def serve():
        assert writer.on_loop() is True
        for i in range(5):
            writer.submit(reward(f"r{i}"))
        for _ in range(250):
            await asyncio.sleep(0.02)
            if await asyncio.to_thread(RewardLog.objects.count) == 5:
                break
        await writer.aclose()

    asyncio.run(serve())

    assert sorted(RewardLog.objects.values_list("request_id", flat=True)) == [f"r{i}" for i in range(5)]
    assert writer_threads("rewards-on-loop") == []


def test_without_postgresql_on_the_loop_a_thread_writes(make_writer, settings):
    settings.DATABASE_LOOP_CONNECTIONS = 0  # as on SQLite: no loop connections
    written = []
    writer = make_writer(written.extend, None, name="writer-in-a-thread")

    async def serve():
        assert writer.on_loop() is False
        writer.submit("a")

    asyncio.run(serve())

    deadline = time.monotonic() + 5
    while written != ["a"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert written == ["a"]
    assert len(writer_threads("writer-in-a-thread")) == 1


def test_a_flush_takes_what_was_pending_not_what_keeps_arriving(make_writer):
    postgresql_only()
    batches: list[list] = []

    async def slow_write(batch):
        await asyncio.sleep(0.005)  # a write takes a while; requests keep coming meanwhile
        batches.append(batch)

    writer = make_writer(batches.append, slow_write, flush_s=0.1)

    async def steady_load():
        writer.on_loop()
        started = time.monotonic()
        for i in range(400):  # one row a millisecond for about half a second
            writer.submit(i)
            await asyncio.sleep(0.001)
        await writer.aclose()
        return time.monotonic() - started

    took_s = asyncio.run(steady_load())
    writer.flush()

    assert sorted(row for batch in batches for row in batch) == list(range(400))
    # one batch per flush interval, give or take the slices LOOP_BATCH cuts (400 rows: 4 at most)
    # and the last round; chasing the tail made one batch per row or two
    assert len(batches) <= took_s / 0.1 + 6, ([len(batch) for batch in batches], took_s)


def test_a_failed_batch_is_retried_and_nothing_is_lost_or_stored_twice(make_writer):
    postgresql_only()
    stored: list = []
    failures = [RuntimeError("the database went away")]

    async def flaky_write(batch):
        if failures:
            raise failures.pop()
        stored.extend(batch)

    writer = make_writer(stored.extend, flaky_write)

    async def serve():
        writer.on_loop()
        for i in range(10):
            writer.submit(i)
        for _ in range(250):
            await asyncio.sleep(0.02)
            if len(stored) == 10:
                break
        await writer.aclose()

    asyncio.run(serve())

    assert stored == list(range(10))
    assert writer.flush() == 0


def test_stopping_the_loops_writer_finishes_the_batch_it_was_writing(make_writer):
    postgresql_only()
    stored: list = []

    async def serve():
        writing = asyncio.Event()

        async def slow_write(batch):
            writing.set()
            await asyncio.sleep(0.2)
            stored.extend(batch)

        writer = make_writer(stored.extend, slow_write, flush_s=0.01)
        writer.on_loop()
        for i in range(3):
            writer.submit(i)
        await writing.wait()
        await writer.aclose()  # cancels the task mid-write
        return writer

    writer = asyncio.run(serve())

    assert stored == [0, 1, 2]  # stored once, whole: not put back for a second write
    assert writer.flush() == 0


def test_a_flush_from_another_thread_returns_once_the_loops_batch_is_stored(make_writer):
    postgresql_only()
    stored: list = []
    flushed_with: list = []

    async def serve():
        release = asyncio.Event()
        writing = asyncio.Event()

        async def held_write(batch):
            writing.set()
            await release.wait()
            stored.extend(batch)

        writer = make_writer(stored.extend, held_write, flush_s=0.01)
        writer.on_loop()
        writer.submit("taken by the loop")
        await writing.wait()
        flusher = threading.Thread(target=lambda: flushed_with.append((writer.flush(), list(stored))))
        flusher.start()
        await asyncio.sleep(0.2)
        assert flushed_with == []  # still waiting for the loop's batch
        release.set()
        await asyncio.to_thread(flusher.join, 5)
        await writer.aclose()

    asyncio.run(serve())

    assert flushed_with == [(0, ["taken by the loop"])]


def test_the_relays_writers_go_on_the_loop_and_back_to_a_thread_after(alice):
    postgresql_only()
    entry = {
        "request_id": "req-on-loop", "tenant_id": alice.tenant.id, "key_id": alice.key_id, "endpoint": "chat.completions",
        "model": "m1", "status": 200, "attempts": [], "prompt_tokens": 3, "completion_tokens": 5, "cost_micros": 0,
        "currency": "USD", "latency_ms": 12, "overhead_ms": 0.5, "created_at": NOW,
    }

    async def serve():
        names = log_writers_on_loop()
        request_log_submit(entry=entry)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(RequestLog.objects.filter(request_id="req-on-loop").exists):
                break
        await log_writers_aclose()
        return names

    names = asyncio.run(serve())

    assert {"request-log-writer", "access-log-writer", "reward-log-writer"} <= set(names)
    assert RequestLog.objects.filter(request_id="req-on-loop").exists()

    # the loop is gone: the next log is written by a thread again
    request_log_submit(entry={**entry, "request_id": "req-after"})
    deadline = time.monotonic() + 5
    while not RequestLog.objects.filter(request_id="req-after").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RequestLog.objects.filter(request_id="req-after").exists()
