"""The ASGI entry point: /v1, the health probes, /metrics and the dashboard billing routes go to
routing's lean app (`routing.app.v1_app`, on the web layer of `routing.web`), the rest (admin,
portal, management API) to Django. Lifespan events, which Django's ASGI handler does not
support, start and stop what the relay keeps per process (upstream pool, log writer)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")
django_app = get_asgi_application()

from django.conf import settings  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from asgiref.sync import sync_to_async  # noqa: E402

from relay.jobs import embedded_start, embedded_stop  # noqa: E402  (needs Django set up)
from routing.app import shutdown, startup, v1_app  # noqa: E402
from observability.ws import websocket_application  # noqa: E402  (the admin's live view)

# The admin's CSS and scripts, collected by `manage.py collectstatic` (make run does it): served
# here because Django serves static files only with DEBUG on.
STATIC_PREFIX = "/" + settings.STATIC_URL.strip("/") + "/"
static_app = Starlette(routes=[Mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=settings.STATIC_ROOT, check_dir=False))])

LEAN_PREFIXES = ("/v1/", "/dashboard/billing/")
LEAN_PATHS = frozenset({"/v1", "/healthz", "/readyz", "/metrics"})  # "/v1" alone: a 404 in /v1's shape


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path.startswith(LEAN_PREFIXES) or path in LEAN_PATHS:
            await v1_app(scope, receive, send)
        elif path.startswith(STATIC_PREFIX):
            await static_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)
    elif kind == "websocket":
        await websocket_application(scope, receive, send)
    else:
        await django_app(scope, receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
                embedded_start()  # periodic jobs in this process when no broker is configured
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await sync_to_async(embedded_stop, thread_sensitive=False)()
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
