"""Connect only to addresses that were vetted: DNS-pinned transports for upstream calls. No Django.

httpx resolves a host name again when it connects, so a check made when a base URL is saved (or
when the routing table is rebuilt) proves nothing about the address a request reaches: a name
can answer a public address to the check and a private one to the connection (DNS rebinding).
Here the transport does the resolution itself (`PinnedVet` for the async wire transport of
providers.wire, `PinnedSyncBackend` under httpcore for background jobs), refuses the connection
unless *every* address the name has is allowed, and then connects to one of those vetted
addresses. TLS still runs against the original host name (sent as SNI, and the certificate is
checked for it), and the Host header is the URL's, so upstreams see nothing different.

Allowed means globally routable, or inside one of the operator's `allow` networks
(TOKENHUB_UPSTREAM_ALLOW_CIDRS, passed in by the caller). A name that does not resolve is refused:
nothing is connected and nothing is remembered as allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from typing import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

from providers.wire import WireTransport

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses the name has now (text). Tests pass their own: DNS cannot run here.
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]
SyncResolver = Callable[[str, int], Sequence[str]]
AllowList = Callable[[], Sequence[Network]]

# Shared address space (RFC 6598) is not "private" to Python but is where cloud metadata lives
# (Alibaba Cloud's 100.100.100.200); we refuse it like the private ranges.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class AddressRefused(httpx.ConnectError):
    """The upstream's host resolves to an address we may not connect to (or to none).

    An httpx error itself, so both transports surface it as is: the wire transport raises it
    from `PinnedVet`, and httpx passes it through from httpcore's pool (the sync transport)."""


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
            return f"upstream host {host!r} resolves to a refused address ({problem}); allow its range with TOKENHUB_UPSTREAM_ALLOW_CIDRS"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def system_resolve_sync(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class PinnedVet:
    """The wire transport's `vet` (providers.wire): resolves, vets every address, and hands
    back those the connection may use, in the resolver's order."""

    def __init__(self, *, allow: AllowList, resolver: AsyncResolver = system_resolve) -> None:
        self._allow = allow
        self._resolver = resolver

    async def __call__(self, host: str, port: int, timeout: float | None) -> Sequence[str]:
        try:
            addresses = list(await asyncio.wait_for(self._resolver(host, port), timeout))
        except (OSError, asyncio.TimeoutError) as exc:
            raise AddressRefused(f"upstream host {host!r} did not resolve ({type(exc).__name__})") from None
        problem = addresses_problem(host, addresses, self._allow())
        if problem is not None:
            raise AddressRefused(problem)
        return addresses


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
) -> httpx.AsyncBaseTransport:
    """The relay's upstream transport (providers.wire) connecting only where `PinnedVet` allows."""
    return WireTransport(
        vet=PinnedVet(allow=allow, resolver=resolver),
        limits=limits,
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
    )


def pinned_sync_transport(*, allow: AllowList, resolver: SyncResolver = system_resolve_sync) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=PinnedSyncBackend(allow=allow, resolver=resolver),
    )
    return transport
