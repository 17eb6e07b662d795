"""The lean ASGI app that serves /v1 (and /healthz, /readyz).

Django's full middleware stack costs milliseconds per request that the relay's customers
would pay on every call (measured in `make bench`, see docs/decisions/001-lean-v1.md), so
`relay.asgi` sends these paths here: Starlette for HTTP plumbing, Django's ORM and settings
behind service functions. Everything else goes to Django.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Awaitable, Callable

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from accounts import keycache
from accounts.selectors import key_hash
from observability.logs import request_id_bind
from relay.db import run_db

from . import background, embeddings, inbound_anthropic, upstream
from . import dashboard
from .errors import RequestTooLarge, TokenHubError
from .journey import Call, chat_completions, check_key, record
from .metering import Meter
from .replies import Reply, StreamReply
from .table import table_aget

log = logging.getLogger(__name__)

Handler = Callable[[Call, bytes], Awaitable[Reply | StreamReply]]
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


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


def error_response(error: TokenHubError, request_id: str, *, protocol: str = "openai", overhead_ms: float | None = None) -> Response:
    body = error.render_anthropic() if protocol == "anthropic" else error.render_openai()
    headers = {"x-request-id": request_id, **error.response_headers()}
    if overhead_ms is not None:
        headers["x-tokenhub-overhead-ms"] = f"{overhead_ms:.2f}"
    return Response(body, status_code=error.status, headers=headers, media_type="application/json")


def to_response(result: Reply | StreamReply) -> Response:
    if isinstance(result, StreamReply):
        return StreamingResponse(result.chunks, status_code=result.status, headers={**STREAM_HEADERS, **result.headers}, media_type=result.media_type)
    return Response(result.body, status_code=result.status, headers=result.headers, media_type=result.media_type)


async def serve(request: Request, handler: Handler, *, endpoint: str, protocol: str = "openai") -> Response:
    request_id = new_request_id()
    request_id_bind(request_id)
    started = time.perf_counter()
    call: Call | None = None
    try:
        policy, client_ip = await authenticate(request)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.REQUEST_MAX_BYTES:
            raise RequestTooLarge(f"Request body is {length} bytes; the limit is {settings.REQUEST_MAX_BYTES}.")
        call = Call(
            request_id=request_id, policy=policy, client_ip=client_ip, endpoint=endpoint,
            request_headers=request.headers, query=request.query_params,
        )
        body = await request.body()
        call.body_size = len(body)
        return to_response(await handler(call, body))
    except TokenHubError as error:
        if call is not None and not call.attempts:
            record(call, status=error.status, error=error, meter=Meter(call, None, {}))
        return error_response(error, request_id, protocol=protocol, overhead_ms=_overhead_ms(started, call))
    except Exception:
        log.exception("request %s failed", request_id)
        error = TokenHubError("The server had an error while processing your request. Request id: " + request_id)
        return error_response(error, request_id, protocol=protocol, overhead_ms=_overhead_ms(started, call))


def _overhead_ms(started: float, call: Call | None) -> float:
    upstream_s = call.upstream_s if call is not None else 0.0
    return (time.perf_counter() - started - upstream_s) * 1000.0


def endpoint_for(handler: Handler, *, endpoint: str, protocol: str = "openai"):
    async def run(request: Request) -> Response:
        return await serve(request, handler, endpoint=endpoint, protocol=protocol)

    return run


async def list_models(call: Call, _body: bytes) -> Reply:
    """The models this key may use: visible, allowed, and served to its group by an enabled channel."""
    table = await table_aget()
    group = call.policy.tenant_group
    data = [
        {"id": public_id, "object": "model", "created": 0, "owned_by": "tokenhub"}
        for public_id, info in sorted(table.models.items())
        if not info.is_hidden
        and call.policy.allows_model(public_id)
        and any(r.is_enabled and group in r.groups for r in table.routes.get(public_id, ()))
    ]
    return Reply(200, orjson.dumps({"object": "list", "data": data}), call.headers())


_LOOPBACK = ("127.", "::1", "localhost")


def metrics_allowed(client_ip: str, presented: str | None) -> bool:
    """Loopback clients may read /metrics; others only with `Bearer METRICS_TOKEN`."""
    import hmac

    if client_ip.startswith(_LOOPBACK):
        return True
    token = settings.METRICS_TOKEN
    return bool(token) and presented is not None and hmac.compare_digest(presented.encode(), token.encode())


async def metrics(request: Request) -> Response:
    from observability.metrics import exposition

    if not metrics_allowed(request.client.host if request.client else "", presented_key(request)):
        return Response(b"metrics are served to loopback clients, or with the metrics token\n", status_code=403, media_type="text/plain")
    body, content_type = exposition()
    return Response(body, media_type=content_type)


async def healthz(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def _database_ok() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def readyz(_request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        await run_db(_database_ok)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            from redis.asyncio import Redis

            client = Redis.from_url(settings.REDIS_URL, socket_timeout=2)
            await client.ping()
            await client.aclose()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    is_ready = all(v == "ok" for v in checks.values())
    return Response(orjson.dumps({"status": "ok" if is_ready else "unavailable", "checks": checks}), status_code=200 if is_ready else 503, media_type="application/json")


ROUTES = [
    Route("/v1/chat/completions", endpoint_for(chat_completions, endpoint="chat.completions"), methods=["POST"]),
    Route("/v1/models", endpoint_for(list_models, endpoint="models"), methods=["GET"]),
    Route("/v1/embeddings", endpoint_for(embeddings.embeddings, endpoint="embeddings"), methods=["POST"]),
    Route("/v1/completions", endpoint_for(embeddings.completions, endpoint="completions"), methods=["POST"]),
    Route("/v1/messages", endpoint_for(inbound_anthropic.messages, endpoint="messages", protocol="anthropic"), methods=["POST"]),
    Route(
        "/v1/messages/count_tokens",
        endpoint_for(inbound_anthropic.count_tokens, endpoint="messages.count_tokens", protocol="anthropic"),
        methods=["POST"],
    ),
    *(
        Route(prefix + "/dashboard/billing/subscription", endpoint_for(dashboard.subscription, endpoint="dashboard.subscription"), methods=["GET"])
        for prefix in ("/v1", "")
    ),
    *(
        Route(prefix + "/dashboard/billing/usage", endpoint_for(dashboard.usage, endpoint="dashboard.usage"), methods=["GET"])
        for prefix in ("/v1", "")
    ),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]

_listeners: list[asyncio.Task] = []


async def startup() -> None:
    from billing.ratecard import ratecard_aget
    from providers import tokens

    # Warm what the first request would otherwise pay for: the routing table (and the vault
    # key), the rate card, the tokenizer.
    await table_aget()
    await ratecard_aget()
    await sync_to_async(tokens.count_text, thread_sensitive=False)("warm up")
    if settings.REDIS_URL:
        _listeners.append(asyncio.get_running_loop().create_task(keycache.listen_for_invalidations()))
    from .health import board
    from .jobs import embedded_start

    if settings.REDIS_URL:
        _listeners.append(asyncio.get_running_loop().create_task(board.run_flusher()))
    embedded_start()  # periodic jobs in this process when no broker is configured


async def shutdown() -> None:
    from observability.services import request_logs_flush

    from .health import board
    from .jobs import embedded_stop
    from .thompson import reward_logs_flush

    await sync_to_async(embedded_stop, thread_sensitive=False)()
    await background.drain()
    for task in _listeners:
        task.cancel()
    await board.aflush()
    await upstream.close()
    await sync_to_async(request_logs_flush, thread_sensitive=False)()
    await sync_to_async(reward_logs_flush, thread_sensitive=False)()


async def _not_found(request: Request, _exc) -> Response:
    error = TokenHubError(f"Unknown endpoint {request.method} {request.url.path}.", code="unknown_url")
    error.status, error.type = 404, "invalid_request_error"
    return error_response(error, new_request_id(), overhead_ms=0.0)


v1_app = Starlette(routes=ROUTES, exception_handlers={404: _not_found, 405: _not_found})
