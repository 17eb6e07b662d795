"""The one pooled HTTP client for upstream calls, built lazily per event loop (Django's ASGI
has no lifespan hook; our lean app closes it on shutdown)."""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

_clients: dict[int, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    loop_id = id(asyncio.get_running_loop())
    existing = _clients.get(loop_id)
    if existing is not None:
        return existing
    made = httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.UPSTREAM_CONNECT_TIMEOUT_S,
            read=settings.UPSTREAM_IDLE_TIMEOUT_S,
            write=settings.UPSTREAM_CONNECT_TIMEOUT_S,
            pool=settings.UPSTREAM_CONNECT_TIMEOUT_S,
        ),
        limits=httpx.Limits(
            max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
            max_keepalive_connections=settings.UPSTREAM_MAX_CONNECTIONS,
            keepalive_expiry=30.0,
        ),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment must be configured on purpose
    )
    _clients[loop_id] = made
    return made


async def close() -> None:
    loop_id = id(asyncio.get_running_loop())
    existing = _clients.pop(loop_id, None)
    if existing is not None:
        await existing.aclose()
