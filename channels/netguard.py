"""Channel base URLs must not point into our own network unless the operator allows it
(TOKENHUB_UPSTREAM_ALLOW_CIDRS), or a tenant-visible channel could reach internal services."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

from django.conf import settings

_cache: dict[str, tuple[float, str | None]] = {}
_CACHE_S = 60.0


def _allowed_networks():
    return [ipaddress.ip_network(c.strip(), strict=False) for c in settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS if c.strip()]


def base_url_problem(url: str) -> str | None:
    """Why this base URL may not be used, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "base URL must be an http(s) URL with a host"
    host = parts.hostname
    now = time.monotonic()
    cached = _cache.get(host)
    if cached and cached[0] > now:
        return cached[1]
    problem = _address_problem(host)
    _cache[host] = (now + _CACHE_S, problem)
    return problem


def _address_problem(host: str) -> str | None:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return None  # unresolvable now: the attempt fails and fails over, no internal address reached
    allowed = _allowed_networks()
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified or address.is_reserved:
            if not any(address in network for network in allowed):
                return (
                    f"base URL host {host!r} resolves to the internal address {address}; "
                    "allow it with TOKENHUB_UPSTREAM_ALLOW_CIDRS"
                )
    return None


def forget() -> None:
    _cache.clear()
