"""Several upstream keys in one channel: how they are written, named and chosen.

    storage      the channel's one sealed credential holds its keys one a line (the batch
                 convention of One API / New API). A one-line credential is a one-key channel.
    names        outside the vault and the in-memory routing table a key is only ever named by
                 its fingerprint (`key_fingerprint`: 12 hex of its SHA-256) or its position
                 ("key 2 of 3"); never the key.
    choosing     rendezvous (highest-random-weight) hashing: each key scores
                 hash(session, fingerprint) and the highest ready key wins. One session always
                 lands on the same key (upstream prompt caches keep hitting); sessions spread
                 evenly; when a key cools, only its own sessions move, each to its
                 second-best key, and come back when it is ready again.

Pure functions, no Django: the table, the journey and the commands share them.
"""

from __future__ import annotations

import hashlib

MAX_KEYS = 256  # more is a pasted file by mistake, not a key pool


def keys_parse(text: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The keys in `text` (one a line; or a list of keys), stripped, blank lines dropped.
    Raises ValueError (never quoting a key) on a key with spaces inside, a key given twice or
    too many keys."""
    if text is None:
        return []
    lines = text.splitlines() if isinstance(text, str) else [line for item in text for line in str(item).splitlines()]
    keys = [line.strip() for line in lines if line.strip()]
    for position, key in enumerate(keys, start=1):
        if any(c.isspace() for c in key):
            raise ValueError(f"key {position} of {len(keys)} has spaces inside; give one key a line")
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        for position, key in enumerate(keys, start=1):
            if key in seen:
                raise ValueError(f"key {position} of {len(keys)} repeats an earlier key")
            seen.add(key)
    if len(keys) > MAX_KEYS:
        raise ValueError(f"{len(keys)} keys is more than the {MAX_KEYS} a channel may hold")
    return keys


def keys_text(keys: list[str]) -> str:
    """What the vault seals: the keys one a line."""
    return "\n".join(keys)


def key_fingerprint(key: str) -> str:
    """How a key is named in health records, commands and logs: 12 hex of its SHA-256 (48 bits:
    tells a channel's keys apart, and says nothing usable about the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _score(session: bytes, fingerprint: str) -> int:
    return int.from_bytes(hashlib.blake2b(session + fingerprint.encode(), digest_size=8).digest(), "big")


def keys_ranked(fingerprints: tuple[str, ...], session: str) -> list[int]:
    """The positions (0-based) of a channel's keys, best first for this session."""
    seed = session.encode()
    return sorted(range(len(fingerprints)), key=lambda i: _score(seed, fingerprints[i]), reverse=True)


def session_of(*, key_id, request: dict | None, request_id: str) -> str:
    """The session a request belongs to, for key stickiness: our API key's id and a hash of the
    conversation's opening (the first system/developer message and the first user message of
    `messages`; else `instructions` and the first item of `input`; else `prompt`). Those stay the
    same on every turn of one conversation, however the message list grows. A request with no
    conversation (embeddings, media) is its own session: it spreads by request id."""
    opening = _opening(request) if isinstance(request, dict) else None
    if not opening:
        return f"r:{request_id}"
    digest = hashlib.sha256(opening.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{key_id}:{digest}"


def _opening(request: dict) -> str:
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        system = next((m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")), None)
        user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        if system is None and user is None:
            return ""
        return f"s:{_text(system)}\x00u:{_text(user)}"
    given = request.get("input")
    if isinstance(given, list) and given:
        return f"i:{_text(request.get('instructions'))}\x00u:{_text(given[0])}"
    if isinstance(given, str) and given:
        return f"i:{_text(request.get('instructions'))}\x00u:{given}"
    prompt = request.get("prompt")
    if isinstance(prompt, str) and prompt:
        return f"p:{prompt[:4096]}"
    return ""


def _text(part) -> str:
    if part is None:
        return ""
    if isinstance(part, dict):
        part = part.get("content", part)
    if isinstance(part, str):
        return part[:4096]
    return repr(part)[:4096]  # structured content (images, tool parts): stable for the same opening
