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
from redis.asyncio import BlockingConnectionPool
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
        # A blocking pool: past REDIS_MAX_CONNECTIONS a command waits for a free connection
        # (up to 5 s) instead of failing at once, as redis-py's default pool does past 100
        # (a burst of requests that all miss the health cache at once read it together).
        pool = BlockingConnectionPool.from_url(url, max_connections=settings.REDIS_MAX_CONNECTIONS, timeout=5, socket_timeout=5)
        client = clients[url] = AsyncRedis(connection_pool=pool)
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


class HeldCommand:
    """One command sent again and again, one at a time, on a connection of the loop's client held
    for it (the configuration version's GET, once per request at low load): redis-py's pool
    and retry layers cost about 58 us of CPU per command here, the held connection about 22
    (docs/decisions/014). Not shared: one owner per event loop, one command in flight. A
    failure drops the connection and sends the command once more through the client, with its
    retries; the next call holds a fresh connection."""

    __slots__ = ("_args", "_client", "_conn", "_packed")

    def __init__(self) -> None:
        self._args: tuple = ()
        self._client: AsyncRedis | None = None
        self._conn = None
        self._packed = None

    async def execute(self, *args):
        client = client_async()
        conn = self._conn
        if conn is None or client is not self._client or args != self._args:
            await self._let_go()
            conn = self._conn = await client.connection_pool.get_connection()
            self._client, self._args, self._packed = client, args, conn.pack_command(*args)
        try:
            await conn.send_packed_command(self._packed, check_health=False)
            return await conn.read_response()
        except BaseException as error:
            # an answer may still be on its way: the connection is closed before its pool has
            # it back (it reconnects when next taken)
            self._conn = None
            await conn.disconnect(nowait=True)
            await client.connection_pool.release(conn)
            if not isinstance(error, Exception):
                raise
        return await client.execute_command(*args)

    async def _let_go(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._client.connection_pool.release(conn)
