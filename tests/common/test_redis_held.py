"""`common.redis.HeldCommand`: the configuration version's GET on a connection held for it. It
must answer what Redis holds now, survive its connection being killed, and never hand a later
caller the answer meant for a command whose caller was cancelled."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from common import redis as shared_redis

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="talks to Redis")


def _key(name: str) -> str:
    return shared_redis.key("test-held", name)


async def test_each_call_reads_what_redis_holds_now():
    sync = shared_redis.client_sync()
    held = shared_redis.HeldCommand()
    sync.set(_key("a"), "1")
    assert await held.execute("GET", _key("a")) == b"1"
    sync.set(_key("a"), "2")
    assert await held.execute("GET", _key("a")) == b"2"
    assert await held.execute("GET", _key("missing")) is None


async def test_a_killed_connection_costs_no_answer():
    sync = shared_redis.client_sync()
    held = shared_redis.HeldCommand()
    sync.set(_key("b"), "before")
    assert await held.execute("GET", _key("b")) == b"before"
    sync.client_kill_filter(_type="normal", skipme=True)  # every other client's connection, the held one too
    sync.set(_key("b"), "after")
    assert await held.execute("GET", _key("b")) == b"after"  # sent again through the client
    assert await held.execute("GET", _key("b")) == b"after"  # and a fresh connection held


async def test_a_cancelled_command_leaves_no_answer_behind_for_the_next():
    sync = shared_redis.client_sync()
    held = shared_redis.HeldCommand()
    sync.delete(_key("list"))
    sync.set(_key("c"), "value")
    waiting = asyncio.ensure_future(held.execute("BLPOP", _key("list"), 2))
    await asyncio.sleep(0.1)  # the BLPOP is on the wire, waiting for an element
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    sync.rpush(_key("list"), "late")  # what the cancelled command would have received
    assert await held.execute("GET", _key("c")) == b"value"
    assert sync.lrange(_key("list"), 0, -1) == [b"late"]  # nobody took it: that connection was closed


async def test_commands_past_the_connection_limit_wait_for_a_connection(settings):
    """A burst larger than the pool (requests that all miss the health cache at once) waits for
    connections; redis-py's default pool failed the 101st at once ("Too many connections")."""
    limit = settings.REDIS_MAX_CONNECTIONS
    client = shared_redis.client_async()  # this test's loop is new: a client of its own
    answers = await asyncio.gather(*(client.blpop([_key("empty")], timeout=0.1) for _ in range(limit + 10)))
    assert answers == [None] * (limit + 10)
