"""Management API: tenants, members and API keys (mounted under /api/v1/ by relay.api)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Q
from ninja import Field, Path, Router, Schema, Status
from ninja.errors import HttpError

from billing.money import MAX_MICROS

from . import roles
from .apiauth import MAX_ID, operator_required, role_in, tenant_for, with_errors
from .models import ApiKey, Membership, Tenant
from .services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    membership_create,
    membership_remove,
    membership_set_role,
    tenant_create,
    tenant_update,
)

router = Router(tags=["accounts"])

# --- tenants -----------------------------------------------------------------------------------


class TenantOut(Schema):
    id: int
    name: str
    group: str
    status: str
    timezone: str
    created_at: datetime


class TenantIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    group: str = Field("default", min_length=1, max_length=50)


class TenantPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    group: str | None = Field(None, min_length=1, max_length=50)
    status: Tenant.Status | None = None


@router.get("/tenants", response=with_errors({200: list[TenantOut]}), summary="List tenants (a member: their own)")
def tenants_list(request):
    tenants = Tenant.objects.order_by("id")
    if not request.auth.is_operator:
        tenants = tenants.filter(pk__in=list(request.auth.roles))
    return list(tenants)


@router.post("/tenants", response=with_errors({201: TenantOut}), summary="Create a tenant")
def tenants_create(request, body: TenantIn):
    operator_required(request)
    return Status(201, tenant_create(name=body.name, group=body.group))


@router.get("/tenants/{tenant_id}", response=with_errors({200: TenantOut}), summary="Show a tenant")
def tenants_show(request, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    return tenant_for(request, tenant_id=tenant_id, permission=roles.TENANT_READ)


@router.patch("/tenants/{tenant_id}", response=with_errors({200: TenantOut}), summary="Rename, regroup, suspend or reactivate")
def tenants_update(request, body: TenantPatch, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.TENANT_READ)  # first: another tenant's id is a 404
    operator_required(request)
    return tenant_update(tenant=tenant, name=body.name, group=body.group, status=body.status)


# --- members -----------------------------------------------------------------------------------


class MemberOut(Schema):
    id: int
    username: str
    email: str
    role: str
    created_at: datetime

    @staticmethod
    def resolve_username(obj):
        return obj.user.get_username()

    @staticmethod
    def resolve_email(obj):
        return obj.user.email


class MemberIn(Schema):
    user: str = Field(min_length=1, max_length=254, description="an existing user's username or email")
    role: Membership.Role = Membership.Role.MEMBER


class RoleIn(Schema):
    role: Membership.Role


def _membership(tenant: Tenant, member_id: int) -> Membership:
    membership = Membership.objects.select_related("user").filter(tenant=tenant, pk=member_id).first()
    if membership is None:
        raise HttpError(404, f"no member {member_id} in this tenant")
    return membership


def _owner_change_allowed(request, tenant: Tenant, *roles_touched: str) -> None:
    if Membership.Role.OWNER in roles_touched and role_in(request, tenant_id=tenant.pk) not in (None, Membership.Role.OWNER):
        raise HttpError(403, "only an owner can make or unmake owners")


@router.get("/tenants/{tenant_id}/members", response=with_errors({200: list[MemberOut]}), summary="List members")
def members_list(request, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.MEMBERS_READ)
    return list(tenant.memberships.select_related("user").order_by("id"))


@router.post(
    "/tenants/{tenant_id}/members", response=with_errors({201: MemberOut}),
    summary="Add an existing user (operator tokens; members invite from /team/)",
)
def members_add(request, body: MemberIn, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.MEMBERS_MANAGE)  # first: another tenant's id is a 404
    if not request.auth.is_operator:
        # Refused before the user is looked up: a member may neither pull someone of another
        # tenant in without their consent nor learn whether an address has an account.
        raise HttpError(403, "a member cannot add someone directly: invite them from the portal's /team/ page (they accept by email)")
    user = get_user_model().objects.filter(Q(username=body.user) | Q(email__iexact=body.user)).first()
    if user is None:
        raise HttpError(404, f"no user {body.user!r}")
    return Status(201, membership_create(tenant=tenant, user=user, role=body.role))


@router.patch("/tenants/{tenant_id}/members/{member_id}", response=with_errors({200: MemberOut}), summary="Change a member's role")
def members_set_role(request, body: RoleIn, tenant_id: int = Path(..., ge=1, le=MAX_ID), member_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.MEMBERS_MANAGE)
    membership = _membership(tenant, member_id)
    _owner_change_allowed(request, tenant, body.role, membership.role)
    return membership_set_role(membership=membership, role=body.role)


@router.delete("/tenants/{tenant_id}/members/{member_id}", response=with_errors({204: None}), summary="Remove a member")
def members_remove(request, tenant_id: int = Path(..., ge=1, le=MAX_ID), member_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.MEMBERS_MANAGE)
    membership = _membership(tenant, member_id)
    _owner_change_allowed(request, tenant, membership.role)
    membership_remove(membership=membership)
    return Status(204, None)


# --- keys ----------------------------------------------------------------------------------------


class KeyOut(Schema):
    id: int
    name: str
    prefix: str
    status: str
    allowed_models: list[str]
    allowed_ips: list[str]
    rpm: int | None
    tpm: int | None
    daily_cap_micros: int | None
    monthly_cap_micros: int | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="the secret: shown this once, never stored")


class KeyIn(Schema):
    name: str = Field("", max_length=100)
    models: list[str] = Field(default_factory=list, max_length=200, description="public model ids; empty: every model")
    allowed_ips: list[str] = Field(default_factory=list, max_length=100, description="IPs or CIDRs; empty: anywhere")
    rpm: int | None = Field(None, ge=0, le=2**31 - 1)
    tpm: int | None = Field(None, ge=0, le=2**31 - 1)
    daily_cap_micros: int | None = Field(None, ge=0, le=MAX_MICROS)
    monthly_cap_micros: int | None = Field(None, ge=0, le=MAX_MICROS)
    expires_at: datetime | None = None


def _keys(request, tenant: Tenant):
    keys = tenant.api_keys.order_by("id")
    if not roles.role_allows(role=role_in(request, tenant_id=tenant.pk) or Membership.Role.OWNER, permission=roles.KEYS_ALL):
        keys = keys.filter(created_by=request.auth.user)
    return keys


@router.get("/tenants/{tenant_id}/keys", response=with_errors({200: list[KeyOut]}), summary="List keys (a member: their own)")
def keys_list(request, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.KEYS_OWN)
    return list(_keys(request, tenant))


@router.post(
    "/tenants/{tenant_id}/keys", response=with_errors({201: KeyCreated}), summary="Create a key (its secret is in this answer only)"
)
def keys_create(request, body: KeyIn, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.KEYS_OWN)
    if any(not m or len(m) > 200 or any(c.isspace() for c in m) for m in body.models):
        raise HttpError(400, "each model must be a non-empty id without spaces")
    key, secret = api_key_create(
        tenant=tenant, name=body.name, allowed_models=body.models, allowed_ips=body.allowed_ips, rpm=body.rpm, tpm=body.tpm,
        daily_cap_micros=body.daily_cap_micros, monthly_cap_micros=body.monthly_cap_micros, expires_at=body.expires_at,
        created_by=request.auth.user,
    )
    key.key = secret
    return Status(201, key)


def _key(request, tenant: Tenant, key_id: int) -> ApiKey:
    key = _keys(request, tenant).filter(pk=key_id).first()
    if key is None:
        raise HttpError(404, f"no key {key_id} in this tenant")
    return key


@router.get("/tenants/{tenant_id}/keys/{key_id}", response=with_errors({200: KeyOut}), summary="Show a key")
def keys_show(request, tenant_id: int = Path(..., ge=1, le=MAX_ID), key_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.KEYS_OWN)
    return _key(request, tenant, key_id)


class RotateIn(Schema):
    overlap_s: int = Field(0, ge=0, le=10 * 365 * 86400, description="how long the old secret keeps working; 0: it stops now")


@router.post(
    "/tenants/{tenant_id}/keys/{key_id}/rotate",
    response=with_errors({200: KeyCreated}),
    summary="Rotate a key's secret (the new one is in this answer only)",
)
def keys_rotate(request, body: RotateIn, tenant_id: int = Path(..., ge=1, le=MAX_ID), key_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.KEYS_OWN)
    key, secret = api_key_rotate(key_id=_key(request, tenant, key_id).pk, overlap_s=body.overlap_s)
    key.key = secret
    return key


@router.post("/tenants/{tenant_id}/keys/{key_id}/revoke", response=with_errors({200: KeyOut}), summary="Revoke a key (at once)")
def keys_revoke(request, tenant_id: int = Path(..., ge=1, le=MAX_ID), key_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.KEYS_OWN)
    return api_key_revoke(key=_key(request, tenant, key_id))
