"""`x-request-id` on every answer Django gives (portal, admin, management API, its 404s and
redirects), as /v1 gives it on its own (`routing.web`): a customer or an operator who reports a
problem can quote it, and every line logged while the request is served carries it."""

from __future__ import annotations

import structlog
from django.utils.deprecation import MiddlewareMixin

from common.ids import random_hex

HEADER = "x-request-id"


class RequestIdMiddleware(MiddlewareMixin):
    """Never taken from the client: an id it chose could collide with another request's, or
    carry text into the logs."""

    def process_request(self, request) -> None:
        # Left bound after the answer: Django logs a 4xx or 5xx answer after the middleware has
        # returned it. Each request binds its own id first, so none carries another's.
        request.request_id = "req_" + random_hex()
        structlog.contextvars.bind_contextvars(request_id=request.request_id)

    def process_response(self, request, response):
        request_id = getattr(request, "request_id", None)
        if request_id is not None:
            response[HEADER] = request_id
        return response
