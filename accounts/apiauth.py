"""Who calls the management API, and what they may reach.

Two kinds of caller:
- an operator, with a token from `create_operator_token` sent as `Authorization: Bearer`;
  a read-only token may call GETs only (refused here, before any handler runs);
- a portal member, with their Django session (writes need the CSRF token), who reaches only
  the tenants they belong to, as far as their role allows (accounts.roles).
A customer's /v1 key is neither: it is refused with 401.

A tenant the caller does not belong to answers 404, exactly as one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ninja import Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from .models import OperatorToken, Tenant
from .roles import role_allows
from .selectors import membership_roles_of, operator_token_find
from .services import operator_token_touch

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_ID = 2**63 - 1  # path ids above BIGINT are a 422, not a database error


class ErrorBody(Schema):
    code: str
    message: str


class Error(Schema):
    """Every error of the management API has this shape."""

    error: ErrorBody


ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 409: Error, 422: Error}


def with_errors(ok: dict) -> dict:
    return {**ok, **ERRORS}




@dataclass(frozen=True)
class Principal:
    operator: OperatorToken | None = None
    user: object | None = None
    roles: dict[int, str] = field(default_factory=dict)  # tenant id -> role, for members

    @property
    def is_operator(self) -> bool:
        return self.operator is not None


class OperatorBearer(HttpBearer):
    def authenticate(self, request, token):
        found = operator_token_find(secret=token)
        if found is None:
            return None  # the next method (a session) may still let the caller in
        if found.is_read_only and request.method not in SAFE_METHODS:
            raise HttpError(403, "this operator token is read-only")
        operator_token_touch(token=found)
        return Principal(operator=found)


class MemberSession(SessionAuth):
    """A signed-in portal user; SessionAuth checks the CSRF token on writes."""

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            # No session, so nothing for CSRF to protect: the caller has no credentials (401),
            # not a forged request (SessionAuth would check CSRF first and answer 403).
            return None
        return super().__call__(request)

    def authenticate(self, request, key):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        return Principal(user=user, roles=membership_roles_of(user=user))


API_AUTH = [OperatorBearer(), MemberSession()]


def operator_required(request) -> Principal:
    principal: Principal = request.auth
    if not principal.is_operator:
        raise HttpError(403, "this needs an operator token")
    return principal


def tenant_for(request, *, tenant_id: int, permission: str) -> Tenant:
    """The tenant, if the caller may do `permission` in it; 404 when they may not see it at all."""
    principal: Principal = request.auth
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if principal.is_operator:
        if tenant is None:
            raise HttpError(404, f"no tenant {tenant_id}")
        return tenant
    role = principal.roles.get(tenant_id)
    if tenant is None or role is None:
        raise HttpError(404, f"no tenant {tenant_id}")
    if not role_allows(role=role, permission=permission):
        raise HttpError(403, f"your role ({role}) does not allow this")
    return tenant


def role_in(request, *, tenant_id: int) -> str | None:
    """The caller's role in the tenant; None for operators (who may do everything)."""
    principal: Principal = request.auth
    return None if principal.is_operator else principal.roles.get(tenant_id)
