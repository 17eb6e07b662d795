"""Upstream text made fit for a customer: what an upstream said may reach the client (a 4xx's
message, a broken stream's reason), but never a credential, an address or an error page.

    public_text(text) -> text with, each replaced by a placeholder:
        secret-looking tokens   sk-..., sk-ant-..., Bearer <token>, masked keys (sk-ab***yz),
                                key=/api_key=/token= values, long opaque tokens after "key"
        addresses               URLs, IPv4/IPv6 addresses, host names with a domain, host:port
    an HTML page (an error page of a proxy in front of the upstream) becomes one generic line.

Conservative on purpose: a word that merely looks like a host name is replaced too; losing a
word of an upstream's message is cheaper than leaking an internal name.
"""

from __future__ import annotations

import re

__all__ = ["GENERIC_PAGE", "public_text"]

GENERIC_PAGE = "the upstream answered with an error page instead of an API error"
_LIMIT = 500

# Domain endings that name hosts (not "messages.0.content"): common public ones and the
# usual private-network ones.
_HOST_ENDINGS = (
    "com", "net", "org", "io", "ai", "dev", "app", "cloud", "co", "cn", "us", "uk", "de", "jp", "info", "biz",
    "xyz", "tech", "site", "online", "local", "localdomain", "internal", "intranet", "lan", "corp", "home",
    "svc", "cluster", "localhost",
)
_HTML = re.compile(r"<\s*(!doctype|html|head|body|title|h1|div|center|p|pre)\b", re.IGNORECASE)
_SECRETS = (
    re.compile(r"\bBearer\s+\S+", re.IGNORECASE),
    re.compile(r"\b(sk|rk|pk|ak|key)[-_][A-Za-z0-9_\-*.]{3,}", re.IGNORECASE),
    re.compile(r"\b(api[_-]?key|access[_-]?token|token|secret|password|authorization)\s*[=:]\s*\S+", re.IGNORECASE),
    re.compile(r"\b[A-Za-z0-9]{2,}\*{2,}[A-Za-z0-9*]*"),  # masked keys: ab****yz
    re.compile(r"\bAIza[0-9A-Za-z_\-]{10,}"),  # Google API keys
    re.compile(r"\b[A-Za-z0-9_\-]{32,}\b"),  # long opaque tokens
)
_ADDRESSES = (
    re.compile(r"\b[a-z][a-z0-9+.\-]*://\S+", re.IGNORECASE),  # URLs
    re.compile(r"\[?\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\]?(?::\d+)?", re.IGNORECASE),  # IPv6
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),  # IPv4, with a port
    re.compile(r"\b(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?:" + "|".join(_HOST_ENDINGS) + r")(?::\d+)?\b", re.IGNORECASE),
    re.compile(r"\b[a-z0-9\-]+:\d{2,5}\b", re.IGNORECASE),  # host:port
)


def public_text(text: str) -> str:
    if not text:
        return ""
    if _HTML.search(text):
        return GENERIC_PAGE
    for pattern in _SECRETS:
        text = pattern.sub("[redacted]", text)
    for pattern in _ADDRESSES:
        text = pattern.sub("[address]", text)
    return text[:_LIMIT]
