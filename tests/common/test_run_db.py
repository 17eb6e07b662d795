"""`run_db`: the hop from the event loop to a database thread carries the caller's context (the
log's request id), and a caller that is cancelled stops waiting while its work still runs to
its end: no transaction is left half done. `run_db_writer` does the same on one thread."""

import asyncio
import fcntl
import os
import threading

import pytest
import structlog

from billing.models import LedgerEntry
from billing.services import balance_credit
from django.db import connection

from common.db import db_threads_disconnect, run_db, run_db_writer, sqlite_writer_turn
from tests.conftest import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)  # each hop first recycles its thread's connection


@pytest.fixture(autouse=True, scope="module")
def _pool_connections_closed():
    """The pool's threads keep their connections (PostgreSQL would not drop the test database
    run alone): closed, not terminated, so that a relay sharing the pool is not disturbed."""
    yield
    db_threads_disconnect()


def test_the_work_runs_in_a_database_thread_with_the_callers_request_id():
    def where(**kwargs):
        return threading.current_thread().name, structlog.contextvars.get_contextvars().get("request_id"), kwargs

    async def call():
        structlog.contextvars.bind_contextvars(request_id="req_hop")
        try:
            return await run_db(where, a=1)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    name, request_id, kwargs = asyncio.run(call())
    assert name.startswith("db") and name != threading.current_thread().name
    assert (request_id, kwargs) == ("req_hop", {"a": 1})


@pytest.mark.parametrize("hop", [run_db, run_db_writer], ids=["pool", "writer"])
def test_an_error_in_the_work_reaches_the_caller(hop):
    def fails():
        raise ValueError("no such thing")

    async def call():
        return await hop(fails)

    with pytest.raises(ValueError, match="no such thing"):
        asyncio.run(call())


@pytest.mark.parametrize("hop", [run_db, run_db_writer], ids=["pool", "writer"])
def test_a_cancelled_caller_leaves_its_transaction_to_finish(hop):
    tenant = make_tenant("t", credit=None, wallet=None)
    started, go, done = threading.Event(), threading.Event(), threading.Event()

    def credit_twice():
        try:
            balance_credit(tenant_id=tenant.pk, kind="credit", amount="1", idempotency_key="first")
            started.set()
            go.wait(10)
            balance_credit(tenant_id=tenant.pk, kind="credit", amount="2", idempotency_key="second")
        finally:
            done.set()

    async def cancel_midway():
        task = asyncio.ensure_future(hop(credit_twice))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go.set()

    asyncio.run(cancel_midway())
    assert done.wait(10)
    assert sorted(LedgerEntry.objects.values_list("idempotency_key", flat=True)) == ["first", "second"]


def test_the_writer_runs_every_call_on_its_one_thread_in_order_and_is_disconnected_with_the_pool():
    """SQLite's money transactions (billing's batches) keep one connection: its page cache stays
    warm and this process's writes never queue at the writer lock behind each other."""
    seen = []

    def where(n):
        seen.append((n, threading.current_thread().ident, id(connection.connection), connection.connection is not None))
        return structlog.contextvars.get_contextvars().get("request_id")

    def touch(n):
        connection.ensure_connection()
        return where(n)

    async def calls():
        structlog.contextvars.bind_contextvars(request_id="req_writer")
        try:
            return await asyncio.gather(*(run_db_writer(touch, n=n) for n in range(20)))
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    assert asyncio.run(calls()) == ["req_writer"] * 20
    assert [n for n, *_ in seen] == list(range(20))  # in the order they came
    assert len({(thread, conn) for _, thread, conn, _ in seen}) == 1  # one thread, one connection

    db_threads_disconnect()
    seen.clear()
    asyncio.run(run_db_writer(where, n=0))
    assert seen[0][3] is False  # its connection was closed


def test_the_writer_outlives_a_loop_that_closed_before_its_answer():
    go = threading.Event()

    def slow():
        go.wait(10)
        return "late"

    async def leave_early():
        asyncio.ensure_future(run_db_writer(slow))
        await asyncio.sleep(0.05)  # taken by the writer; asyncio.run then cancels it and closes the loop

    asyncio.run(leave_early())
    go.set()

    def answer():
        return 42

    async def next_call():
        return await run_db_writer(answer)

    assert asyncio.run(next_call()) == 42


def _turn_taken_elsewhere(path: str) -> bool:
    """Whether another process (another open file: flock treats them alike) would wait for the turn."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class _Database:
    """What sqlite_writer_turn reads of a connection: its settings' NAME (a file here, whichever
    database this pass of the suite runs on)."""

    def __init__(self, name) -> None:
        self.settings_dict = {"NAME": name}


def test_the_writer_turn_is_one_process_at_a_time_and_freed_on_errors(tmp_path):
    database = _Database(tmp_path / "money.sqlite3")
    path = f"{database.settings_dict['NAME']}-writers"
    with sqlite_writer_turn(database):
        assert _turn_taken_elsewhere(path)
    assert not _turn_taken_elsewhere(path)
    with pytest.raises(ValueError), sqlite_writer_turn(database):
        raise ValueError("a failed batch")
    assert not _turn_taken_elsewhere(path)


def test_an_in_memory_database_has_no_turn_file():
    with sqlite_writer_turn(_Database("file:memorydb_default?mode=memory&cache=shared")):
        pass
    assert not os.path.exists("file:memorydb_default?mode=memory&cache=shared-writers")
