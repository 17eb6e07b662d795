"""The one way to Redis: a client per event loop for async code, one shared client for sync
code, and one key namespace for every key and pub/sub channel.

Keys are `tokenhub:<database name>:<what>`: the processes of one deployment (one database)
share them; two deployments, or two test runs, on one Redis do not mix. `client_async()` and
`client_sync()` return None when REDIS_URL is unset (the embedded default): callers keep an
in-process fallback.
"""

from __future__ import annotations

import asyncio

import redis
from django.conf import settings
from django.db import connections
from redis.asyncio import Redis as AsyncRedis

_async_clients: dict[tuple[int, str], AsyncRedis] = {}
_sync_clients: dict[str, redis.Redis] = {}


def key(*parts: object) -> str:
    """A namespaced key (or pub/sub channel) name: key("idem", tenant_id, "abc")."""
    database = connections["default"].settings_dict["NAME"]
    return ":".join(("tokenhub", str(database), *(str(part) for part in parts)))


def client_async() -> AsyncRedis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    slot = (id(asyncio.get_running_loop()), url)
    client = _async_clients.get(slot)
    if client is None:
        client = _async_clients[slot] = AsyncRedis.from_url(url, socket_timeout=5)
    return client


def client_sync() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = redis.Redis.from_url(url, socket_timeout=5)
    return client
