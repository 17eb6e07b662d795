"""The management API's share of the audit log: one record per successful write under /api/v1/
(POST, PUT, PATCH, DELETE answered below 400), with who (the operator token's name, or the
signed-in user), what (method and route), which object (the path's last id) and the request's
fields (secrets redacted by `audit_record`). A Django middleware, so no endpoint can forget it."""

from __future__ import annotations

import json

from .services import audit_record

API_PREFIX = "/api/v1/"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _actor(request) -> str:
    principal = getattr(request, "auth", None)
    operator = getattr(principal, "operator", None)
    if operator is not None:
        return f"token:{operator.name}"
    user = getattr(principal, "user", None) or getattr(request, "user", None)
    return f"user:{user.get_username()}" if user is not None and user.is_authenticated else ""


def _fields(request) -> dict | None:
    if not request.body or "json" not in (request.content_type or ""):
        return None
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    return _storable(data if isinstance(data, dict) else {"body": data})


def _storable(value):
    """The client's JSON as a database can keep it: no NUL characters, no lone surrogates
    (PostgreSQL's JSON refuses both; the record must not fail because a client sent them)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


class ApiAuditMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        body = request.body if request.method in WRITES and request.path.startswith(API_PREFIX) else None
        response = self.get_response(request)
        if body is None or response.status_code >= 400:
            return response
        actor = _actor(request)
        if actor:
            route = request.path[len(API_PREFIX):].strip("/")
            parts = route.split("/")
            target_id = next((p for p in reversed(parts) if p.isdigit()), None)
            audit_record(
                actor=actor, action=f"api.{request.method.lower()} {route}"[:100],
                target_type=parts[0] if parts else "api", target_id=target_id,
                before=None, after=_fields(request),
            )
        return response
