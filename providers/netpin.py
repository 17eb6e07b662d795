"""Connect only to addresses that were vetted: DNS-pinned transports for upstream calls. No Django.

httpx resolves a host name again when it connects, so a check made when a base URL is saved (or
when the routing table is rebuilt) proves nothing about the address a request reaches: a name
can answer a public address to the check and a private one to the connection (DNS rebinding).
Here the network backend under httpx does the resolution itself, refuses the connection unless
*every* address the name has is allowed, and then connects to one of those vetted addresses.
TLS still runs against the original host name (httpcore passes it as SNI and checks the
certificate for it), and the Host header is the URL's, so upstreams see nothing different.

Allowed means globally routable, or inside one of the operator's `allow` networks
(TOKENHUB_UPSTREAM_ALLOW_CIDRS, passed in by the caller). A name that does not resolve is refused:
nothing is connected and nothing is remembered as allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
import time
from typing import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name has now (text). Tests pass their own: DNS cannot run here.
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]
SyncResolver = Callable[[str, int], Sequence[str]]
AllowList = Callable[[], Sequence[Network]]

# Shared address space (RFC 6598) is not "private" to Python but is where cloud metadata lives
# (Alibaba Cloud's 100.100.100.200); we refuse it like the private ranges.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class AddressRefused(httpcore.ConnectError):
    """The upstream's host resolves to an address we may not connect to (or to none)."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def address_problem(text: str, allow: Sequence[Network]) -> str | None:
    """Why this address may not be connected to, or None when it may."""
    address: Address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1, 64:ff9b::a00:1 and 2002:a00:1:: reach the IPv4 address inside
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in ipaddress.ip_network("64:ff9b::/96"):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            problem = address_problem(str(inner), allow)
            if problem is None or any(address in network for network in allow):
                return None
            return problem
    if any(address.version == network.version and address in network for network in allow):
        return None
    if address.is_global and address not in _SHARED and not address.is_multicast:
        return None
    return f"{address} is not a public address"


def addresses_problem(host: str, addresses: Sequence[str], allow: Sequence[Network]) -> str | None:
    if not addresses:
        return f"upstream host {host!r} did not resolve"
    for text in addresses:
        problem = address_problem(text, allow)
        if problem is not None:
            return (
                f"upstream host {host!r} resolves to a refused address ({problem}); "
                "allow its range with TOKENHUB_UPSTREAM_ALLOW_CIDRS"
            )
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def system_resolve_sync(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class _Stream(httpcore.AsyncNetworkStream):
    """AnyIO's stream, with the raw socket looked up once.

    httpcore's pool asks every pooled connection whether its socket became readable (the
    upstream closed it) each time it places a request; AnyIO answers through a chain of typed
    attribute look-ups per connection per request, which was most of the pool scan's CPU at
    c=32 (bench/profile_relay.py). The socket of a connection never changes, so it is kept."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")
        self._poller: select.poll | None = None  # made on the first check, kept for the next

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        if info == "is_readable":
            return self._is_readable()
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)

    def _is_readable(self) -> bool:
        """Whether reading would return at once: data, or the end a closed connection gives
        (a socket already closed counts as readable, so its connection is dropped)."""
        fd = -1 if self._socket is None else self._socket.fileno()
        if fd < 0:
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)
        return bool(self._poller.poll(0))


class _LeanPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, placing a request without asking every pooled connection first.

    httpcore places queued requests (when one arrives and when an answer ends) after checking
    every pooled connection for expiry, which for an idle one is a readiness syscall: at c=32
    that scan was the biggest single cost of the relay's event loop (bench/profile_relay.py).
    Here only the connection about to be handed out is checked (expired or hung up: closed,
    and the next one is tried), and the full clean-up (expired, closed and surplus idle
    connections) runs at most every SWEEP_S, so an idle connection outlives its keep-alive
    expiry by at most that long. Which connection a request gets is unchanged: the first
    available one for its origin, else a new one, else one made in place of an idle one.
    httpx and httpcore are pinned (pyproject.toml); tests/providers/test_netpin_pool.py runs it."""

    SWEEP_S = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._swept_at = 0.0

    def _assign_requests_to_connections(self) -> list:
        now = time.monotonic()
        if now - self._swept_at >= self.SWEEP_S:
            self._swept_at = now
            return super()._assign_requests_to_connections()
        closing: list = []
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            chosen = None
            for connection in list(self._connections):
                if connection.is_closed():
                    self._connections.remove(connection)
                elif connection.can_handle_request(origin) and connection.is_available():
                    if connection.has_expired():
                        self._connections.remove(connection)
                        closing.append(connection)
                        continue
                    chosen = connection
                    break
            if chosen is None:
                if len(self._connections) >= self._max_connections:
                    idle = next((connection for connection in self._connections if connection.is_idle()), None)
                    if idle is None:
                        continue  # stays queued until a connection is free
                    self._connections.remove(idle)
                    closing.append(idle)
                chosen = self.create_connection(origin)
                self._connections.append(chosen)
            pool_request.assign_to_connection(chosen)
        return closing


class PinnedAsyncBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets every address, connects to a vetted one."""

    def __init__(self, *, allow: AllowList, resolver: AsyncResolver = system_resolve) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow = allow
        self._resolver = resolver

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = list(await asyncio.wait_for(self._resolver(host, port), timeout))
        except (OSError, asyncio.TimeoutError) as exc:
            raise AddressRefused(f"upstream host {host!r} did not resolve ({type(exc).__name__})") from None
        problem = addresses_problem(host, addresses, self._allow())
        if problem is not None:
            raise AddressRefused(problem)
        last: Exception | None = None
        for address in addresses:
            try:
                return _Stream(await self._inner.connect_tcp(address, port, timeout, local_address, socket_options))
            except httpcore.ConnectError as exc:
                last = exc
        raise last  # type: ignore[misc]

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AddressRefused("unix sockets are not upstreams")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedSyncBackend(httpcore.NetworkBackend):
    def __init__(self, *, allow: AllowList, resolver: SyncResolver = system_resolve_sync) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow = allow
        self._resolver = resolver

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = list(self._resolver(host, port))
        except OSError as exc:
            raise AddressRefused(f"upstream host {host!r} did not resolve ({type(exc).__name__})") from None
        problem = addresses_problem(host, addresses, self._allow())
        if problem is not None:
            raise AddressRefused(problem)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last  # type: ignore[misc]

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise AddressRefused("unix sockets are not upstreams")


def pinned_async_transport(
    *,
    allow: AllowList,
    limits: httpx.Limits = httpx.Limits(),
    resolver: AsyncResolver = system_resolve,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `PinnedAsyncBackend`.

    httpx 0.28 takes no network backend, so the pool it builds is replaced by an equal one that
    has ours (httpx is pinned; a test sends a request through it)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = _LeanPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedAsyncBackend(allow=allow, resolver=resolver),
    )
    return transport


def pinned_sync_transport(*, allow: AllowList, resolver: SyncResolver = system_resolve_sync) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=PinnedSyncBackend(allow=allow, resolver=resolver),
    )
    return transport
