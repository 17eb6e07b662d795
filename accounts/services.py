from __future__ import annotations

import ipaddress
import secrets
from datetime import datetime

from django.utils import timezone

from django.db import transaction

from . import keycache
from .models import ApiKey, Membership, OperatorToken, Tenant
from .selectors import key_hash

KEY_PREFIX = "sk-"


class InvalidInput(ValueError):
    """Bad input to an accounts service; the message says which and why."""


@transaction.atomic
def tenant_create(*, name: str, group: str = "default", timezone: str = "UTC") -> Tenant:
    name = name.strip()
    if not name:
        raise InvalidInput("tenant name must not be empty")
    if Tenant.objects.filter(name=name).exists():
        raise InvalidInput(f"a tenant named {name!r} exists already")
    if not group or not group.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"group {group!r} must be letters, digits, - or _")
    return Tenant.objects.create(name=name, group=group, timezone=timezone)


def membership_add(*, user, tenant: Tenant, role: str = Membership.Role.MEMBER) -> Membership:
    membership, _ = Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": role})
    return membership


def api_key_create(
    *,
    tenant: Tenant,
    name: str = "",
    allowed_models: list[str] | None = None,
    allowed_ips: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    daily_cap_micros: int | None = None,
    monthly_cap_micros: int | None = None,
    expires_at: datetime | None = None,
    mode: str = "",
    allows_directives: bool = True,
    created_by=None,
) -> tuple[ApiKey, str]:
    """Make a key; returns it and its secret, which is never stored and never shown again."""
    for value, label in ((rpm, "rpm"), (tpm, "tpm"), (daily_cap_micros, "daily cap"), (monthly_cap_micros, "monthly cap")):
        if value is not None and value < 0:
            raise InvalidInput(f"{label} must not be negative")
    for cidr in allowed_ips or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(f"{cidr!r} is not an IP address or CIDR") from None
    secret = KEY_PREFIX + secrets.token_urlsafe(36)
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        key_hash=key_hash(secret),
        prefix=secret[:10],
        allowed_models=sorted(set(allowed_models or ())),
        allowed_ips=list(allowed_ips or ()),
        rpm=rpm,
        tpm=tpm,
        daily_cap_micros=daily_cap_micros,
        monthly_cap_micros=monthly_cap_micros,
        expires_at=expires_at,
        mode=mode,
        allows_directives=allows_directives,
        created_by=created_by,
    )
    return key, secret


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=key.pk).update(status=ApiKey.Status.REVOKED)
    key.status = ApiKey.Status.REVOKED
    keycache.invalidate(key_hash=key.key_hash)
    return key


def api_key_update(*, key: ApiKey, **fields) -> ApiKey:
    for name, value in fields.items():
        setattr(key, name, value)
    key.save(update_fields=list(fields))
    keycache.invalidate(key_hash=key.key_hash)
    return key


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    if status not in Tenant.Status.values:
        raise InvalidInput(f"status must be one of {', '.join(Tenant.Status.values)}, not {status!r}")
    tenant.status = status
    tenant.save(update_fields=["status"])
    for hashed in tenant.api_keys.values_list("key_hash", flat=True):
        keycache.invalidate(key_hash=hashed)
    return tenant


def tenant_update(*, tenant: Tenant, name: str | None = None, group: str | None = None, status: str | None = None) -> Tenant:
    """Rename, regroup, suspend or reactivate a tenant; its keys see the change on their next request."""
    if name is not None:
        name = name.strip()
        if not name:
            raise InvalidInput("tenant name must not be empty")
        if Tenant.objects.filter(name=name).exclude(pk=tenant.pk).exists():
            raise InvalidInput(f"a tenant named {name!r} exists already")
        tenant.name = name
    if group is not None:
        if not group or not group.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(f"group {group!r} must be letters, digits, - or _")
        tenant.group = group
    if name is not None or group is not None:
        tenant.save(update_fields=["name", "group"])
    if status is not None:
        tenant_set_status(tenant=tenant, status=status)
    else:
        for hashed in tenant.api_keys.values_list("key_hash", flat=True):
            keycache.invalidate(key_hash=hashed)
    return tenant


def _role(role: str) -> str:
    if role not in Membership.Role.values:
        raise InvalidInput(f"role must be one of {', '.join(Membership.Role.values)}, not {role!r}")
    return role


@transaction.atomic
def membership_create(*, tenant: Tenant, user, role: str = Membership.Role.MEMBER) -> Membership:
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise InvalidInput(f"{user.get_username()} is a member already")
    return Membership.objects.create(tenant=tenant, user=user, role=_role(role))


def _owners_left(membership: Membership) -> int:
    return Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER).exclude(pk=membership.pk).count()


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    role = _role(role)
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER and not _owners_left(membership):
        raise InvalidInput("a tenant keeps at least one owner")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.role == Membership.Role.OWNER and not _owners_left(membership):
        raise InvalidInput("a tenant keeps at least one owner")
    membership.delete()


OPERATOR_TOKEN_PREFIX = "tho-"  # never "sk-": a customer key and an operator token cannot be confused


def operator_token_create(*, name: str, is_read_only: bool = False) -> tuple[OperatorToken, str]:
    """Make a management-API token; returns it and its secret, which is never stored."""
    name = name.strip()
    if not name:
        raise InvalidInput("token name must not be empty")
    secret = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(36)
    token = OperatorToken.objects.create(name=name, token_hash=key_hash(secret), prefix=secret[:10], is_read_only=is_read_only)
    return token, secret


def operator_token_revoke(*, token: OperatorToken) -> OperatorToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def operator_token_touch(*, token: OperatorToken) -> None:
    """Note the token's use, at most once a minute (the admin shows it; stale tokens get revoked)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        OperatorToken.objects.filter(pk=token.pk).update(last_used_at=now)
