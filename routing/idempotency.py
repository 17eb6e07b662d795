"""Idempotency keys on /v1 POSTs: `Idempotency-Key` (or `X-Idempotency-Key`).

The first request with a key claims it (per tenant) and runs; its answer, whole or the bytes of
its stream, is kept for IDEMPOTENCY_TTL_S. The same key with the same method, path and body
then gets that answer again, streamed again when it was a stream, with `Idempotent-Replayed:
true`: nothing is sent upstream and nothing is charged. The same key with another body is a
409 `idempotency_key_reused`. A duplicate that arrives while the first still runs waits for it
(up to IDEMPOTENCY_WAIT_S), then gets 409 `idempotency_key_in_use` with Retry-After: never a
second upstream call. An answer that is not a success (an error, a stream the client left) is
not kept: the claim is released and the key can be used again. An answer larger than
IDEMPOTENCY_MAX_BYTES is not kept either (the key is released; documented in docs/protocols.md).

Records live in Redis when REDIS_URL is set (`common.redis`), in the database otherwise
(`routing.models.IdempotencyRecord`).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction

from common import redis as shared_redis
from common.db import run_db

from .errors import InvalidRequest, TokenHubError
from .models import IdempotencyRecord
from .replies import Reply, StreamReply

MAX_KEY_LENGTH = 255
_POLL_S = 0.1


class IdempotencyConflict(TokenHubError):
    status, type, code, should_retry = 409, "invalid_request_error", "idempotency_key_reused", False


class IdempotencyInUse(TokenHubError):
    status, type, code, should_retry = 409, "invalid_request_error", "idempotency_key_in_use", True


@dataclass(slots=True)
class Stored:
    fingerprint: str
    state: str
    status: int | None = None
    media_type: str = ""
    is_stream: bool = False
    body: bytes = b""


def presented_key(headers) -> str | None:
    value = headers.get("idempotency-key")
    if value is None:  # an empty header is present, and refused below: not the same as none
        value = headers.get("x-idempotency-key")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters.", param="Idempotency-Key", code="invalid_idempotency_key"
        )
    return value


def fingerprint_of(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


# --- stores --------------------------------------------------------------------------------------


class _RedisStore:
    def __init__(self, client) -> None:
        self._client = client

    @staticmethod
    def _key(tenant_id: int, key_hash: str) -> str:
        return shared_redis.key("idem", tenant_id, key_hash)

    async def claim(self, tenant_id: int, key_hash: str, fingerprint: str, owner: str) -> Stored | None:
        record = orjson.dumps({"fingerprint": fingerprint, "state": "running", "owner": owner})
        if await self._client.set(self._key(tenant_id, key_hash), record, nx=True, ex=settings.IDEMPOTENCY_TTL_S):
            return None
        return await self.read(tenant_id, key_hash)

    async def read(self, tenant_id: int, key_hash: str) -> Stored | None:
        raw = await self._client.get(self._key(tenant_id, key_hash))
        if raw is None:
            return None
        data = orjson.loads(raw)
        body = bytes.fromhex(data.get("body", ""))
        return Stored(
            data["fingerprint"], data["state"], data.get("status"), data.get("media_type", ""), data.get("is_stream", False), body
        )

    async def complete(self, tenant_id: int, key_hash: str, owner: str, stored: Stored) -> None:
        record = orjson.dumps({
            "fingerprint": stored.fingerprint, "state": "done", "owner": owner, "status": stored.status,
            "media_type": stored.media_type, "is_stream": stored.is_stream, "body": stored.body.hex(),
        })
        await self._client.set(self._key(tenant_id, key_hash), record, ex=settings.IDEMPOTENCY_TTL_S)

    async def release(self, tenant_id: int, key_hash: str, owner: str) -> None:
        name = self._key(tenant_id, key_hash)
        raw = await self._client.get(name)
        if raw is not None and orjson.loads(raw).get("owner") == owner:
            await self._client.delete(name)


class _DatabaseStore:
    async def claim(self, tenant_id: int, key_hash: str, fingerprint: str, owner: str) -> Stored | None:
        return await run_db(_db_claim, tenant_id=tenant_id, key_hash=key_hash, fingerprint=fingerprint, owner=owner)

    async def read(self, tenant_id: int, key_hash: str) -> Stored | None:
        return await run_db(_db_read, tenant_id=tenant_id, key_hash=key_hash)

    async def complete(self, tenant_id: int, key_hash: str, owner: str, stored: Stored) -> None:
        await run_db(
            lambda **kw: IdempotencyRecord.objects.filter(**kw).update(
                state=IdempotencyRecord.State.DONE, status=stored.status, media_type=stored.media_type,
                is_stream=stored.is_stream, body=stored.body,
            ),
            tenant_id=tenant_id, key_hash=key_hash, owner=owner,
        )

    async def release(self, tenant_id: int, key_hash: str, owner: str) -> None:
        await run_db(lambda **kw: IdempotencyRecord.objects.filter(**kw).delete(), tenant_id=tenant_id, key_hash=key_hash, owner=owner)


def _db_claim(*, tenant_id: int, key_hash: str, fingerprint: str, owner: str) -> Stored | None:
    now = datetime.now(timezone.utc)
    for _ in range(2):
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(
                    tenant_id=tenant_id, key_hash=key_hash, fingerprint=fingerprint, owner=owner,
                    created_at=now, expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_TTL_S),
                )
            return None
        except IntegrityError:
            # an expired record is as good as none: remove it and claim again (once)
            if not IdempotencyRecord.objects.filter(tenant_id=tenant_id, key_hash=key_hash, expires_at__lte=now).delete()[0]:
                return _db_read(tenant_id=tenant_id, key_hash=key_hash)
    return _db_read(tenant_id=tenant_id, key_hash=key_hash)


def _db_read(*, tenant_id: int, key_hash: str) -> Stored | None:
    row = IdempotencyRecord.objects.filter(tenant_id=tenant_id, key_hash=key_hash, expires_at__gt=datetime.now(timezone.utc)).first()
    if row is None:
        return None
    return Stored(row.fingerprint, row.state, row.status, row.media_type, row.is_stream, bytes(row.body))


def idempotency_records_prune(*, now: datetime | None = None) -> int:
    """Delete expired database records (the retention job calls this)."""
    return IdempotencyRecord.objects.filter(expires_at__lte=now or datetime.now(timezone.utc)).delete()[0]


def _store():
    client = shared_redis.client_async()
    return _RedisStore(client) if client is not None else _DatabaseStore()


# --- the wrapper -----------------------------------------------------------------------------------


async def run_once(
    *, tenant_id: int, key: str, fingerprint: str, run: Callable[[], Awaitable[Reply | StreamReply]],
    headers: Callable[[], dict[str, str]],
) -> Reply | StreamReply:
    """`run()` at most once per (tenant, key) within the TTL; a replay otherwise. `headers()`
    gives this request's own headers (request id, limits), put on a replay."""
    store = _store()
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    owner = uuid.uuid4().hex
    waited_s = 0.0
    while True:
        existing = await store.claim(tenant_id, key_hash, fingerprint, owner)
        if existing is None:
            break  # ours: run it
        if existing.fingerprint != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request body (or endpoint). "
                "Use a new key for a new request.", param="Idempotency-Key",
            )
        if existing.state == IdempotencyRecord.State.DONE:
            return _replay(existing, headers())
        if waited_s >= settings.IDEMPOTENCY_WAIT_S:
            raise IdempotencyInUse(
                "A request with this Idempotency-Key is still running; retry after it has finished.",
                param="Idempotency-Key", headers={"retry-after": "1"},
            )
        await asyncio.sleep(_POLL_S)
        waited_s += _POLL_S
    try:
        result = await run()
    except BaseException:
        await asyncio.shield(store.release(tenant_id, key_hash, owner))
        raise
    if result.status >= 300:
        await store.release(tenant_id, key_hash, owner)
        return result
    if isinstance(result, StreamReply):
        return StreamReply(_kept(result, store, tenant_id, key_hash, owner, fingerprint), result.headers, result.status, result.media_type)
    if len(result.body) > settings.IDEMPOTENCY_MAX_BYTES:
        await store.release(tenant_id, key_hash, owner)
    else:
        await store.complete(tenant_id, key_hash, owner, Stored(fingerprint, "done", result.status, result.media_type, False, result.body))
    return result


async def _kept(result: StreamReply, store, tenant_id: int, key_hash: str, owner: str, fingerprint: str) -> AsyncIterator[bytes]:
    """The stream as it goes to the client, kept whole once it has ended."""
    parts: list[bytes] = []
    size = 0
    is_whole = False
    try:
        async for chunk in result.chunks:
            size += len(chunk)
            if size <= settings.IDEMPOTENCY_MAX_BYTES:
                parts.append(chunk)
            yield chunk
        is_whole = size <= settings.IDEMPOTENCY_MAX_BYTES and not _ended_in_error(parts)
    finally:
        if is_whole:
            stored = Stored(fingerprint, "done", result.status, result.media_type, True, b"".join(parts))
            await asyncio.shield(store.complete(tenant_id, key_hash, owner, stored))
        else:
            await asyncio.shield(store.release(tenant_id, key_hash, owner))


def _ended_in_error(parts: list[bytes]) -> bool:
    """A stream the upstream broke ends with an error event: not an answer to keep."""
    tail = parts[-1] if parts else b""
    return b'"error"' in tail[:200] and b"[DONE]" not in tail


def _replay(stored: Stored, headers: dict[str, str]) -> Reply | StreamReply:
    replay_headers = {**headers, "idempotent-replayed": "true"}
    if stored.is_stream:
        async def chunks() -> AsyncIterator[bytes]:
            yield stored.body

        return StreamReply(chunks(), replay_headers, stored.status or 200, stored.media_type or "text/event-stream")
    return Reply(stored.status or 200, stored.body, replay_headers, stored.media_type or "application/json")
