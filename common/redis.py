"""The one way to Redis: a client per event loop for async code, one shared client for sync
code, and one key namespace for every key and pub/sub channel.

Async clients are kept per loop *object* (weakly), never per `id(loop)`: a loop that dies and a
new one that lands at the same address would otherwise share a client whose connections belong
to the dead loop. A connected client holds its loop alive through its transports, so when a new
loop asks, the clients of loops closed since then are let go.

Keys are `tokenhub:<database name>:<what>`: the processes of one deployment (one database)
share them; two deployments, or two test runs, on one Redis do not mix. `client_async()` and
`client_sync()` return None when REDIS_URL is unset (the embedded default): callers keep an
in-process fallback.
"""

from __future__ import annotations

import asyncio
import weakref

import redis
from django.conf import settings
from django.db import connections
from redis.asyncio import Redis as AsyncRedis

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncRedis]] = weakref.WeakKeyDictionary()
_sync_clients: dict[str, redis.Redis] = {}


def key(*parts: object) -> str:
    """A namespaced key (or pub/sub channel) name: key("idem", tenant_id, "abc").

    The name is read from the connection settings, not from a connection: on the event loop,
    `connections["default"]` makes a new connection object per task (Django keeps them per
    context), a cost paid on every request. The test runner renames the database in both."""
    database = connections.settings["default"]["NAME"]
    return ":".join(("tokenhub", str(database), *(str(part) for part in parts)))


def client_async() -> AsyncRedis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    loop = asyncio.get_running_loop()
    clients = _async_clients.get(loop)
    if clients is None:
        _forget_closed_loops()
        clients = _async_clients[loop] = {}
    client = clients.get(url)
    if client is None:
        client = clients[url] = AsyncRedis.from_url(url, socket_timeout=5)
    return client


def _forget_closed_loops() -> None:
    # Their sockets cannot be closed politely without their loop; the collector closes them.
    for loop in [loop for loop in _async_clients.keys() if loop.is_closed()]:
        _async_clients.pop(loop, None)


def client_sync() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = redis.Redis.from_url(url, socket_timeout=5)
    return client
