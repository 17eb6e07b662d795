"""The lean ASGI app that serves /v1 (and /healthz, /readyz, /metrics, the dashboard routes).

Django's full middleware stack costs milliseconds per request that the relay's customers
would pay on every call (measured in `make bench`, see docs/decisions/001-lean-v1.md), so
`relay.asgi` sends these paths here: our own small web layer (`routing.web`, decision 012) for
the HTTP plumbing, Django's ORM and settings behind service functions. Everything else goes to
Django.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable

import orjson
import sniffio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from starlette.requests import Request

from accounts import keycache
from accounts.selectors import key_hash
from billing.ratecard import ratecard_aget
from channels import upstream
from channels.health.board import board
from channels.table import table_aget
from common import background
from common import redis as shared_redis
from common.config_version import config_sync
from common.db import run_db
from observability.logs import request_id_bind
from observability.metrics import exposition
from observability.services import log_writers_aclose, log_writers_flush, log_writers_on_loop
from providers import tokens
from vault.services import warn_if_key_derived_from_secret_key

from . import dashboard, embeddings, idempotency, inbound_anthropic, media, model_list, orchestration, responses
from .errors import RequestTooLarge, TokenHubError, echo
from .journey import Call, Identity, check_key, record
from .metering import Meter
from .replies import Reply, StreamReply
from .web import App, Cors, Route, new_request_id

log = logging.getLogger(__name__)

Handler = Callable[[Call, bytes], Awaitable[Reply | StreamReply]]


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request):
    secret = presented_key(request)
    policy = await keycache.key_policy_aget(key_hash=key_hash(secret)) if secret else None
    client_ip = request.client.host if request.client else None
    return check_key(policy, client_ip), client_ip


def error_response(error: TokenHubError, request_id: str, *, protocol: str = "openai", overhead_ms: float | None = None) -> Reply:
    body = error.render_anthropic() if protocol == "anthropic" else error.render_openai()
    headers = {"x-request-id": request_id, **error.response_headers()}
    if overhead_ms is not None:
        headers["x-tokenhub-overhead-ms"] = f"{overhead_ms:.2f}"
    return Reply(error.status, body, headers)


async def serve(request: Request, handler: Handler, *, endpoint: str, protocol: str = "openai") -> Reply | StreamReply:
    request_id = new_request_id()
    request_id_bind(request_id)
    started = time.perf_counter()
    call: Call | None = None
    try:
        await config_sync()  # a change made anywhere is in force for this request
        policy, client_ip = await authenticate(request)
        created_at = datetime.now(timezone.utc)
        try:
            body = await read_body(request, limit=settings.REQUEST_MAX_BYTES)
            refusal = None
        except RequestTooLarge as error:  # refused while its body was read: still a call, and logged
            body, refusal = b"", error
        call = Call(
            Identity(
                request_id=request_id,
                policy=policy,
                client_ip=client_ip,
                endpoint=endpoint,
                headers=request.headers,
                query=request.query_params,
                path_params=request.path_params,
                started=started,
                created_at=created_at,
                body_size=len(body),
            )
        )
        if refusal is not None:
            raise refusal
        once_key = idempotency.presented_key(request.headers) if request.method == "POST" else None
        if once_key is None:
            return await handler(call, body)
        return await idempotency.run_once(
            tenant_id=policy.tenant_id,
            key=once_key,
            fingerprint=idempotency.fingerprint_of(request.method, request.url.path, body),
            run=lambda: handler(call, body),
            headers=call.headers,
        )
    except TokenHubError as error:
        if call is not None and not call.attempts.made:
            record(call, status=error.status, error=error, meter=Meter(call, None, {}))
        if call is not None:
            error.headers = {**call.limit_headers(), **error.headers}
        return error_response(error, request_id, protocol=protocol, overhead_ms=_overhead_ms(started, call))
    except Exception:
        log.exception("request %s failed", request_id)
        error = TokenHubError("The server had an error while processing your request. Request id: " + request_id)
        return error_response(error, request_id, protocol=protocol, overhead_ms=_overhead_ms(started, call))


async def read_body(request: Request, *, limit: int) -> bytes:
    """The body, refused with 413 as soon as it would pass `limit` bytes: a declared length
    is checked before reading, a chunked body while it arrives (never buffered whole)."""
    length = request.headers.get("content-length")
    if length and length.isascii() and length.isdigit() and int(length) > limit:  # isdigit alone takes "²"
        raise RequestTooLarge(f"Request body is {length} bytes; the limit is {limit}.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        parts.append(part)
    return b"".join(parts)


def _overhead_ms(started: float, call: Call | None) -> float:
    """A request that has a `Call` reads its overhead there (the one measurement, shared with
    its request log); one refused before it had one (a bad key) is timed from `started`."""
    if call is not None:
        return call.overhead_ms
    return (time.perf_counter() - started) * 1000.0


def endpoint_for(handler: Handler, *, endpoint: str, protocol: str = "openai"):
    async def run(request: Request) -> Reply | StreamReply:
        return await serve(request, handler, endpoint=endpoint, protocol=protocol)

    return run


def model_endpoint(handler: Handler, *, endpoint: str):
    """The model routes answer (errors included) in the protocol of the client that asks."""

    async def run(request: Request) -> Reply | StreamReply:
        protocol = "anthropic" if model_list.wants_anthropic_shape(request.headers) else "openai"
        return await serve(request, handler, endpoint=endpoint, protocol=protocol)

    return run


_LOOPBACK = ("127.", "::1", "localhost")


def metrics_allowed(client_ip: str, presented: str | None) -> bool:
    """Loopback clients may read /metrics; others only with `Bearer METRICS_TOKEN`."""
    if client_ip.startswith(_LOOPBACK):
        return True
    token = settings.METRICS_TOKEN
    return bool(token) and presented is not None and hmac.compare_digest(presented.encode(), token.encode())


async def metrics(request: Request) -> Reply:
    if not metrics_allowed(request.client.host if request.client else "", presented_key(request)):
        return Reply(403, b"metrics are served to loopback clients, or with the metrics token\n", media_type="text/plain")
    body, content_type = exposition()
    return Reply(200, body, media_type=content_type)


async def healthz(_request: Request) -> Reply:
    return Reply(200, b'{"status":"ok"}')


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def readyz(_request: Request) -> Reply:
    checks: dict[str, str] = {}
    try:
        await run_db(_database_ok)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            await shared_redis.client_async().ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    is_ready = all(v == "ok" for v in checks.values())
    return Reply(200 if is_ready else 503, orjson.dumps({"status": "ok" if is_ready else "unavailable", "checks": checks}))


ROUTES = [
    Route.of("/v1/chat/completions", endpoint_for(orchestration.chat_completions, endpoint="chat.completions"), ["POST"]),
    Route.of("/v1/models", model_endpoint(model_list.list_models, endpoint="models"), ["GET"]),
    Route.of("/v1/models/{model_id:path}", model_endpoint(model_list.retrieve_model, endpoint="models.retrieve"), ["GET"]),
    Route.of("/v1/responses", endpoint_for(responses.responses, endpoint="responses"), ["POST"]),
    Route.of("/v1/embeddings", endpoint_for(embeddings.embeddings, endpoint="embeddings"), ["POST"]),
    Route.of("/v1/completions", endpoint_for(embeddings.completions, endpoint="completions"), ["POST"]),
    Route.of("/v1/images/generations", endpoint_for(media.images_generations, endpoint="images.generations"), ["POST"]),
    Route.of("/v1/audio/transcriptions", endpoint_for(media.transcriptions, endpoint="audio.transcriptions"), ["POST"]),
    Route.of("/v1/audio/speech", endpoint_for(media.speech, endpoint="audio.speech"), ["POST"]),
    Route.of("/v1/moderations", endpoint_for(media.moderations, endpoint="moderations"), ["POST"]),
    Route.of("/v1/messages", endpoint_for(inbound_anthropic.messages, endpoint="messages", protocol="anthropic"), ["POST"]),
    Route.of(
        "/v1/messages/count_tokens",
        endpoint_for(inbound_anthropic.count_tokens, endpoint="messages.count_tokens", protocol="anthropic"),
        ["POST"],
    ),
    *(
        Route.of(
            prefix + "/dashboard/billing/subscription",
            endpoint_for(dashboard.subscription, endpoint="dashboard.subscription"),
            ["GET"],
        )
        for prefix in ("/v1", "")
    ),
    *(
        Route.of(prefix + "/dashboard/billing/usage", endpoint_for(dashboard.usage, endpoint="dashboard.usage"), ["GET"])
        for prefix in ("/v1", "")
    ),
    Route.of("/metrics", metrics, ["GET"]),
    Route.of("/healthz", healthz, ["GET"]),
    Route.of("/readyz", readyz, ["GET"]),
]

_listeners: list[asyncio.Task] = []


async def startup() -> None:
    warn_if_key_derived_from_secret_key()  # loud, once per web process: docs/security.md

    # This thread runs an asyncio loop: say so once, the way sniffio lets a loop declare itself.
    # Otherwise every AnyIO operation under the upstream client (each read, write, timeout and
    # lock) sniffs for it through asyncio.current_task(), which on Python 3.11 costs a getpid()
    # system call each time: about 26 per request (bench/profile_relay.py --syscalls).
    sniffio.thread_local.name = "asyncio"

    # Warm what the first request would otherwise pay for: the routing table (and the vault
    # key), the rate card, the tokenizer.
    await table_aget()
    await ratecard_aget()
    await sync_to_async(tokens.count_text, thread_sensitive=False)("warm up")
    log_writers_on_loop()  # on PostgreSQL: no writer thread fights this loop for the GIL
    gc_settle()
    if settings.REDIS_URL:
        _listeners.append(asyncio.get_running_loop().create_task(board.run_flusher()))


GC_YOUNG_THRESHOLD = 5000


def gc_settle() -> None:
    """What was built to start (Django, the apps, the warmed caches) stays for the process's
    life: collected once, then frozen, so that no full collection walks it again (under load
    one took ~80 ms, a pause every request in flight waits out); young collections run every
    GC_YOUNG_THRESHOLD net allocations instead of 700 (decision 015)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


async def shutdown() -> None:
    await background.drain()
    sniffio.thread_local.name = None
    for task in _listeners:
        task.cancel()
    await board.aflush()
    await upstream.close()
    await log_writers_aclose()
    await sync_to_async(log_writers_flush, thread_sensitive=False)()


def _not_found(request: Request) -> Reply:
    started = time.perf_counter()
    error = TokenHubError(f"Unknown endpoint {echo(request.method)} {echo(request.url.path)}.", code="unknown_url")
    error.status, error.type = 404, "invalid_request_error"
    return error_response(error, new_request_id(), overhead_ms=_overhead_ms(started, None))


def _method_not_allowed(request: Request, allow: str) -> Reply:
    started = time.perf_counter()
    error = TokenHubError(f"{echo(request.method)} is not allowed on {echo(request.url.path)}; use {allow}.", code="method_not_allowed")
    error.status, error.type, error.should_retry = 405, "invalid_request_error", False
    error.headers = {"allow": allow}
    protocol = "anthropic" if request.url.path.startswith("/v1/messages") else "openai"
    return error_response(error, new_request_id(), protocol=protocol, overhead_ms=_overhead_ms(started, None))


# Browser clients (chat front-ends in client mode, playgrounds) call /v1 from other origins with
# a bearer key and no cookies, so every origin is allowed by default; CORS_ALLOW_ORIGINS narrows it.
# Preflights are answered by the web layer, before any key is asked for.
def cors() -> Cors:
    return Cors(
        origins=settings.CORS_ALLOW_ORIGINS, methods=["GET", "POST", "OPTIONS"], expose_headers=settings.CORS_EXPOSE_HEADERS, max_age=600
    )


def build_app() -> App:
    """The /v1 app with the CORS settings in force now (read once: the app keeps them)."""
    return App(ROUTES, cors(), not_found=_not_found, method_not_allowed=_method_not_allowed)


v1_app = build_app()
