"""The WebSocket routes, mounted by relay.asgi next to the HTTP dispatch. Session cookies
authenticate (the admin's own login), and only pages of our own hosts may open a socket: a
cookie-carrying WebSocket from another site is refused (cross-site WebSocket hijacking)."""

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import RoutingDecisionConsumer

LIVE_PATH = "ws/admin/routing-decisions/"

websocket_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(URLRouter([path(LIVE_PATH, RoutingDecisionConsumer.as_asgi())]))
)
