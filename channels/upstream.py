"""The one pooled HTTP client for upstream calls, built lazily per event loop (Django's ASGI
has no lifespan hook; our lean app closes it on shutdown). Its transport (providers.wire)
connects only to addresses that pass channels.netguard's rule (providers.netpin), and it never
follows redirects."""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

from providers.httpkit import UpstreamClient
from providers.netpin import pinned_async_transport, pinned_sync_transport

from .netguard import allowed_networks

_clients: dict[int, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    loop_id = id(asyncio.get_running_loop())
    existing = _clients.get(loop_id)
    if existing is not None:
        return existing
    made = client_make()
    _clients[loop_id] = made
    return made


def client_make(**overrides) -> UpstreamClient:
    """A new pinned client (the shared one, or a short-lived one for probes and discovery)."""
    limits = httpx.Limits(
        max_connections=settings.UPSTREAM_MAX_CONNECTIONS,
        max_keepalive_connections=settings.UPSTREAM_MAX_CONNECTIONS,
        keepalive_expiry=30.0,
    )
    options = dict(
        timeout=httpx.Timeout(
            connect=settings.UPSTREAM_CONNECT_TIMEOUT_S,
            read=settings.UPSTREAM_IDLE_TIMEOUT_S,
            write=settings.UPSTREAM_CONNECT_TIMEOUT_S,
            pool=settings.UPSTREAM_CONNECT_TIMEOUT_S,
        ),
        transport=pinned_async_transport(allow=allowed_networks, limits=limits),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment must be configured on purpose
    )
    options.update(overrides)
    return UpstreamClient(**options)


def sync_client_make(**options) -> httpx.Client:
    """A pinned blocking client (background jobs that call a channel)."""
    return httpx.Client(transport=pinned_sync_transport(allow=allowed_networks), follow_redirects=False, trust_env=False, **options)


async def close() -> None:
    loop_id = id(asyncio.get_running_loop())
    existing = _clients.pop(loop_id, None)
    if existing is not None:
        await existing.aclose()
