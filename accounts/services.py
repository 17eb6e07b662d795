from __future__ import annotations

import ipaddress
import secrets
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction

from . import keycache
from .models import ApiKey, Membership, Tenant
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
    return Tenant.objects.create(name=name, group=group, timezone=timezone_check(name=timezone))


def timezone_check(*, name: str) -> str:
    """`name` if it is an IANA time zone (key caps roll over at its midnight), else InvalidInput."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(f"time zone {name!r} is unknown (an IANA name such as 'Europe/Berlin' or 'UTC')") from None
    return name


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
    tenant.status = status
    tenant.save(update_fields=["status"])
    for hashed in tenant.api_keys.values_list("key_hash", flat=True):
        keycache.invalidate(key_hash=hashed)
    return tenant
