"""Secrets out of what the audit log keeps: a field whose name marks it as a credential, key
hash, token, password or one-time code is replaced by REDACTED, and so is any string that looks
like a customer API key, wherever it sits."""

from __future__ import annotations

import datetime
import decimal
import uuid

REDACTED = "[redacted]"
# Parts of a field name (split on "_") that make it secret: `credential`, `key_hash`, `api_key`,
# `token`, `check_token`, `password`, `codes`, `salt`...
SECRET_PARTS = frozenset(
    {"credential", "credentials", "hash", "key", "token", "secret", "password", "passphrase", "codes", "code", "salt", "sealed"}
)
# ...unless the name says it is only a reference or a display fragment.
HARMLESS_SUFFIXES = ("_id", "_prefix", "_count", "_at")
KEY_PREFIXES = ("sk-", "tk-")  # customer keys and operator tokens


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith(HARMLESS_SUFFIXES) or lowered == "idempotency_key":
        return False
    return any(part in SECRET_PARTS for part in lowered.replace("-", "_").split("_"))


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
