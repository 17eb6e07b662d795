"""One async Redis client per live event loop: a loop that closes takes its client with it, and a
new loop (even one that lands at the dead loop's address, which CPython reuses readily) gets a
client of its own."""

from __future__ import annotations

import asyncio
import gc

import pytest
from django.conf import settings as django_settings

from common import redis as shared_redis

needs_redis = pytest.mark.skipif(not django_settings.REDIS_URL, reason="talks to Redis")


async def _client():
    return shared_redis.client_async()


async def _ping():
    return await shared_redis.client_async().ping()


def _in_a_new_loop(coroutine_function):
    """Run in a fresh loop, close it and let it go; return the result and the loop's address."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine_function()), id(loop)
    finally:
        loop.close()
        del loop
        gc.collect()


def test_a_new_loop_never_gets_the_client_of_a_closed_one(settings):
    """Keyed by id(loop), a loop at a dead one's address got the dead one's client; CPython
    reuses addresses readily, though not on every run, so this looks at many loops."""
    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"  # clients never connect here
    clients = []
    for _ in range(30):
        client, _address = _in_a_new_loop(_client)
        clients.append(client)  # held, so no client's address is reused

    assert len({id(client) for client in clients}) == len(clients)


def test_the_next_loop_lets_go_of_a_closed_loops_clients(settings):
    """Even while something still holds the closed loop (as a connected client's transports do)."""
    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_client())
    assert loop in shared_redis._async_clients
    loop.close()
    _in_a_new_loop(_client)
    assert loop not in shared_redis._async_clients


def test_one_loop_keeps_one_client(settings):
    settings.REDIS_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/0"

    async def twice():
        return shared_redis.client_async(), shared_redis.client_async()

    (first, second), _address = _in_a_new_loop(twice)
    assert first is second


@needs_redis
def test_a_client_works_in_a_loop_opened_after_another_closed():
    for _ in range(5):
        assert _in_a_new_loop(_ping)[0] is True


@needs_redis
def test_clients_of_closed_loops_are_let_go():
    """A connected client holds its loop alive; the next new loop drops what closed loops left."""
    for _ in range(5):
        _in_a_new_loop(_ping)
    _in_a_new_loop(_client)
    closed = [loop for loop in shared_redis._async_clients.keys() if loop.is_closed()]
    assert len(closed) <= 1  # at most the last one, which asked after the others closed
