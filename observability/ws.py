"""The admin's live view of routing decisions: a WebSocket served by the same lean Starlette app
style as /v1 (relay.asgi sends WebSocket connections here), one JSON message per decision.

Only an active staff user with permission to view request logs may watch, signed in with the
admin's own session cookie; only pages of our own hosts may open the socket (the Origin must be
one of ALLOWED_HOSTS), so another site cannot ride an operator's cookie (cross-site WebSocket
hijacking). A refused connection is closed before it is accepted (the client sees HTTP 403).

(Django Channels would serve this too, but the layout's top-level `channels/` app is a package
of the same name: docs/decisions/004-live-view-on-starlette.md.)
"""

from __future__ import annotations

import asyncio
from importlib import import_module
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from common.db import run_db

from .broadcast import broadcast_subscribe

LIVE_PATH = "ws/admin/routing-decisions/"


def _may_watch(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm("observability.view_requestlog"))


def _watcher(session_key: str | None):
    """The user of this admin session when they may watch, else None."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
    from django.utils.crypto import constant_time_compare

    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id, backend_path = session.get(SESSION_KEY), session.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None  # a session from before a password change is no session
    return user if _may_watch(user) else None


def _origin_is_ours(origin: str | None) -> bool:
    if not origin:
        return False
    host = urlsplit(origin).hostname or ""
    return validate_host(host, settings.ALLOWED_HOSTS)


async def live_socket(websocket: WebSocket) -> None:
    if not _origin_is_ours(websocket.headers.get("origin")):
        await websocket.close(code=4403)
        return
    user = await run_db(_watcher, session_key=websocket.cookies.get(settings.SESSION_COOKIE_NAME))
    if user is None:
        await websocket.close(code=4403)
        return
    async with broadcast_subscribe() as batches:
        await websocket.accept()
        sender = asyncio.get_running_loop().create_task(_send(websocket, batches))
        try:
            while True:  # the viewer sends nothing; this notices when it goes away
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()


async def _send(websocket: WebSocket, batches: asyncio.Queue) -> None:
    try:
        while True:
            for event in await batches.get():
                await websocket.send_json(event)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the viewer went away between two batches


websocket_application = Starlette(routes=[WebSocketRoute("/" + LIVE_PATH, live_socket)])

