"""The management API: one NinjaAPI under /api/v1/, each app's router mounted here (wiring
only), and the one error shape every endpoint answers with:

    {"error": {"code": "<code>", "message": "<what went wrong and what to do>"}}

    400 invalid_request   bad values (a service refused them); nothing changed
    401 unauthenticated   no operator token or session (a /v1 customer key is not one)
    403 forbidden         read-only token on a write, role too small, CSRF missing
    404 not_found         no such object, or it belongs to a tenant the caller is not in, or no such path
    405 method_not_allowed  the path exists but does not take this method (`Allow` lists those it takes)
    409 conflict          the change clashes with what exists (history, idempotency key)
    422 validation_error  the body or query does not match the schema
    500 server_error      our fault; logged, never with details in the answer
"""

from __future__ import annotations

import functools
import logging

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ObjectDoesNotExist, ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import HttpResponseNotAllowed
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError

from accounts.api import router as accounts_router
from accounts.apiauth import API_AUTH
from billing.api import router as billing_router
from observability.api import router as observability_router
from channels.api import router as channels_router
from channels.services import ChannelHasHistory

log = logging.getLogger(__name__)

CODES = {400: "invalid_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         409: "conflict", 422: "validation_error", 500: "server_error"}



class ManagementAPI(NinjaAPI):
    """A NinjaAPI whose answers from outside the handlers have the error shape too: a method a
    path does not take (django-ninja answers it in plain text) and a path no route matches (it
    would fall through to Django's HTML page)."""

    def _get_urls(self):
        urls = super()._get_urls()
        for pattern in urls:
            pattern.callback = _shaped_405(pattern.callback)
        # last, so that it only sees what no route matched
        return [*urls, re_path(r"^", _no_such_path)]


def _shaped_405(view):
    def shaped(request, response):
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        answer = error_response(request, 405, f"{request.method} is not allowed here; allowed: {response['Allow']}")
        answer["Allow"] = response["Allow"]
        return answer

    if iscoroutinefunction(view):
        @functools.wraps(view)
        async def checked_async(request, *args, **kwargs):
            return shaped(request, await view(request, *args, **kwargs))

        return checked_async

    @functools.wraps(view)  # keeps csrf_exempt: a session's CSRF check is MemberSession's
    def checked(request, *args, **kwargs):
        return shaped(request, view(request, *args, **kwargs))

    return checked


@csrf_exempt  # nothing is written: a POST to a wrong path is a 404, not a CSRF failure
def _no_such_path(request):
    return error_response(request, 404, "no such path in the management API (its routes: /api/v1/docs)")


api = ManagementAPI(
    title="TokenHub management API",
    version="1",
    description="Operators: `Authorization: Bearer <token from create_operator_token>`. Portal members: their session.",
    auth=API_AUTH,
    urls_namespace="mgmt",
)
api.add_router("", accounts_router)
api.add_router("", billing_router)
api.add_router("", channels_router)
api.add_router("", observability_router)


def error_response(request, status: int, message: str):
    return api.create_response(request, {"error": {"code": CODES.get(status, "error"), "message": message}}, status=status)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return error_response(request, exc.status_code, _one_line(exc.message))


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return error_response(request, 401, "send an operator token as 'Authorization: Bearer <token>', or sign in to the portal")


@api.exception_handler(AuthorizationError)
def _forbidden(request, exc):
    return error_response(request, 403, _one_line(exc.message if hasattr(exc, "message") else "forbidden"))


@api.exception_handler(ValidationError)
def _invalid(request, exc: ValidationError):
    parts = []
    for error in exc.errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return error_response(request, 422, _one_line("; ".join(parts) or "the request does not match the schema"))


@api.exception_handler(ChannelHasHistory)
def _conflict(request, exc):
    return error_response(request, 409, _one_line(exc))


@api.exception_handler(ObjectDoesNotExist)
def _missing(request, exc):
    return error_response(request, 404, _one_line(exc) or "not found")


@api.exception_handler(IntegrityError)
def _clash(request, exc):
    return error_response(request, 409, "the change conflicts with existing data")


@api.exception_handler(ValueError)
def _refused(request, exc):
    return error_response(request, 400, _one_line(exc) or "invalid value")


@api.exception_handler(DjangoValidationError)
def _refused_django(request, exc):
    return error_response(request, 400, _one_line("; ".join(exc.messages)))


@api.exception_handler(DataError)
def _bad_data(request, exc):
    return error_response(request, 400, "a value is out of range or malformed")


@api.exception_handler(Exception)
def _server_error(request, exc):
    log.exception("management API error on %s %s", request.method, request.path)
    return error_response(request, 500, "internal error; it has been logged")
