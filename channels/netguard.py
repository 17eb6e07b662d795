"""Channel base URLs must not point into our own network unless the operator allows it
(TOKENHUB_UPSTREAM_ALLOW_CIDRS), or a tenant-visible channel could reach internal services.

Two checks, one rule (providers.netpin): when a base URL is saved or the routing table is
rebuilt (so the operator sees the reason at once), and when a connection is made (the only check
that binds: the transport connects to the address it vetted, so DNS rebinding gains nothing).
A name that does not resolve is refused, never remembered as allowed; only when a URL is saved
(`is_saving=True`) is it let through, since the connection refuses it anyway while it does not
resolve, and an operator may configure a channel before its name exists (an air-gapped import).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from django.conf import settings

from providers.netpin import Network, SyncResolver, addresses_problem, parse_networks, system_resolve_sync

_cache: dict[tuple[str, tuple[str, ...]], tuple[float, str | None]] = {}
_ALLOWED_CACHE_S = 60.0
_REFUSED_CACHE_S = 5.0  # a DNS hiccup keeps a channel out this long, not a minute
_parsed: tuple[tuple[str, ...], tuple[Network, ...]] = ((), ())


def allowed_networks() -> tuple[Network, ...]:
    """TOKENHUB_UPSTREAM_ALLOW_CIDRS, parsed once per value (read per connection)."""
    global _parsed
    cidrs = tuple(settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS)
    if _parsed[0] != cidrs:
        _parsed = (cidrs, parse_networks(cidrs))
    return _parsed[1]


def base_url_problem(url: str, *, resolver: SyncResolver | None = None, is_saving: bool = False) -> str | None:
    """Why this base URL may not be used, or None when it may."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "base URL must be an http(s) URL with a host"
    host = parts.hostname
    now = time.monotonic()
    key = (host, tuple(settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS))
    cached = _cache.get(key) if resolver is None and not is_saving else None
    if cached and cached[0] > now:
        return cached[1]
    try:
        addresses = list((resolver or system_resolve_sync)(host, parts.port or 443))
    except (OSError, UnicodeError):
        addresses = []
    if not addresses and is_saving:
        return None  # not cached: every later use resolves (and refuses) again
    problem = addresses_problem(host, addresses, allowed_networks())
    if resolver is None:
        _cache[key] = (now + (_ALLOWED_CACHE_S if problem is None else _REFUSED_CACHE_S), problem)
    return problem


def forget() -> None:
    _cache.clear()
