"""The ASGI entry point: /v1 and the health probes go to routing's lean app, the rest (admin,
portal, management API) to Django. Lifespan events, which Django's ASGI handler does not
support, start and stop what the relay keeps per process (upstream pool, log writer)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
django_app = get_asgi_application()

from routing.app import shutdown, startup, v1_app  # noqa: E402  (needs Django set up)

LEAN_PREFIXES = ("/v1/", "/dashboard/billing/")
LEAN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path.startswith(LEAN_PREFIXES) or path in LEAN_PATHS:
            await v1_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
    else:
        await django_app(scope, receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
