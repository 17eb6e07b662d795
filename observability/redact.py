"""Secrets out of what the audit log and the log lines keep: a field (or a query parameter)
whose name marks it as a credential, key hash, token, password or one-time code is replaced by
REDACTED, and so is any string that looks like a customer API key or an operator token,
wherever it sits."""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Parts of a field name (split on "_") that make it secret: `credential`, `key_hash`, `api_key`,
# `token`, `check_token`, `password`, `codes`, `salt`...
SECRET_PARTS = frozenset(
    {"credential", "credentials", "hash", "key", "token", "secret", "password", "passphrase", "codes", "code", "salt", "sealed"}
)
# ...unless the name says it is only a reference or a display fragment.
HARMLESS_SUFFIXES = ("_id", "_prefix", "_count", "_at")
KEY_PREFIXES = ("sk-", "tho-")  # customer keys and operator tokens (accounts.services)
# name=value in a query string (quotes end it: a request's repr quotes its path)
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s'\"]*)=(?P<value>[^&;#\s'\"]*)")
_KEY_LIKE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in KEY_PREFIXES) + r")[A-Za-z0-9_\-]{6,}")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith(HARMLESS_SUFFIXES) or lowered == "idempotency_key":
        return False
    return any(part in SECRET_PARTS for part in lowered.replace("-", "_").split("_"))


def text_redact(text: str) -> str:
    """`text` (a URL, a request's repr, a log message) with the value of each query parameter
    that is secret by its name or its look replaced, and any key-like string elsewhere too."""

    def pair(match: re.Match) -> str:
        name, value = unquote_plus(match["name"]), unquote_plus(match["value"])
        if value and (is_secret_name(name) or value.startswith(KEY_PREFIXES)):
            return f"{match['lead']}{match['name']}={REDACTED}"
        return match[0]

    return _KEY_LIKE.sub(REDACTED, _QUERY_PAIR.sub(pair, text))


def redact(value):
    """A JSON-ready copy of `value` with secrets replaced."""
    if isinstance(value, dict):
        return {str(k): (REDACTED if is_secret_name(str(k)) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return REDACTED if value.startswith(KEY_PREFIXES) else value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return REDACTED  # binary fields are salts and sealed blobs here
    return str(value)


def model_fields(obj) -> dict:
    """A model instance's concrete fields (foreign keys as ids), redacted."""
    data = {}
    for field in obj._meta.concrete_fields:
        data[field.attname] = getattr(obj, field.attname)
    return redact(data)
