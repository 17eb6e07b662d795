"""The pinned transport's pooled connections: kept alive and reused, and dropped (never reused)
once the upstream closed them while they sat idle. Real sockets, a raw HTTP/1.1 server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from providers.netpin import parse_networks, pinned_async_transport

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"


class _Upstream:
    """Answers each request on a connection; with `close_after_each`, closes the connection
    right after its answer without saying so (no `connection: close`), as a broken or
    restarting upstream does."""

    def __init__(self, *, close_after_each: bool) -> None:
        self.close_after_each = close_after_each
        self.connections = 0
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(ANSWER)
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed.set()


async def _serve(upstream: _Upstream):
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _client() -> httpx.AsyncClient:
    networks = parse_networks(["127.0.0.0/8"])
    return httpx.AsyncClient(transport=pinned_async_transport(allow=lambda: networks), trust_env=False)


@pytest.mark.asyncio
async def test_a_kept_alive_connection_is_reused():
    upstream = _Upstream(close_after_each=False)
    server, port = await _serve(upstream)
    async with server, _client() as client:
        for _ in range(3):
            response = await client.get(f"http://127.0.0.1:{port}/v1/models")
            assert response.json() == {"ok": True}
    assert upstream.connections == 1


@pytest.mark.asyncio
async def test_a_connection_the_upstream_closed_while_idle_is_not_reused():
    upstream = _Upstream(close_after_each=True)
    server, port = await _serve(upstream)
    async with server, _client() as client:
        for _ in range(3):
            upstream.closed.clear()
            response = await client.get(f"http://127.0.0.1:{port}/v1/models")
            assert response.json() == {"ok": True}
            await asyncio.wait_for(upstream.closed.wait(), 5)
            await asyncio.sleep(0.05)  # the close reaches the client's socket
    assert upstream.connections == 3


def _bounded_client(*, max_connections: int, keepalive_expiry: float = 30.0) -> httpx.AsyncClient:
    networks = parse_networks(["127.0.0.0/8"])
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=keepalive_expiry)
    return httpx.AsyncClient(transport=pinned_async_transport(allow=lambda: networks, limits=limits), trust_env=False)


@pytest.mark.asyncio
async def test_more_requests_than_connections_wait_for_one_and_all_are_answered():
    upstream = _Upstream(close_after_each=False)
    server, port = await _serve(upstream)
    async with server, _bounded_client(max_connections=2) as client:
        answers = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/v1/models") for _ in range(12)))
    assert [a.json() for a in answers] == [{"ok": True}] * 12
    assert upstream.connections <= 2


@pytest.mark.asyncio
async def test_a_connection_past_its_keep_alive_expiry_is_not_reused():
    upstream = _Upstream(close_after_each=False)
    server, port = await _serve(upstream)
    async with server, _bounded_client(max_connections=4, keepalive_expiry=0.01) as client:
        for _ in range(3):
            assert (await client.get(f"http://127.0.0.1:{port}/v1/models")).json() == {"ok": True}
            await asyncio.sleep(0.05)
    assert upstream.connections == 3
