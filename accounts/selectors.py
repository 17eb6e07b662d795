from __future__ import annotations

import hashlib
import ipaddress

from django.db.models import Q

from .models import ApiKey, Membership, OperatorToken, Tenant
from .policy import KeyPolicy


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def tenant_get(*, ref: str | int) -> Tenant:
    """A tenant by its unique name, or by its id. Raises Tenant.DoesNotExist."""
    ref = str(ref)
    tenant = Tenant.objects.filter(name=ref).first()
    if tenant is None and ref.isdigit():
        tenant = Tenant.objects.filter(pk=int(ref)).first()
    if tenant is None:
        raise Tenant.DoesNotExist(f"no tenant named or numbered {ref!r}")
    return tenant


def key_policy_get(*, key_hash: str) -> KeyPolicy | None:
    """The policy of the key with this secret: its current one, or the one it had before a
    rotation, which expires when the overlap window ends."""
    key = (
        ApiKey.objects.select_related("tenant")
        .filter(Q(key_hash=key_hash) | Q(previous_key_hash=key_hash))
        .first()
    )
    if key is None:
        return None
    return key_policy_from(key, is_previous=key.key_hash != key_hash)


def key_policy_from(key: ApiKey, *, is_previous: bool = False) -> KeyPolicy:
    tenant = key.tenant
    expires_at = key.expires_at
    if is_previous:
        expires_at = key.previous_expires_at if expires_at is None else min(expires_at, key.previous_expires_at)
    return KeyPolicy(
        key_id=key.pk,
        key_prefix=key.prefix,
        tenant_id=tenant.pk,
        tenant_name=tenant.name,
        tenant_group=tenant.group,
        tenant_timezone=tenant.timezone,
        is_tenant_active=tenant.status == Tenant.Status.ACTIVE,
        is_revoked=key.status == ApiKey.Status.REVOKED,
        expires_at=expires_at,
        allowed_models=frozenset(key.allowed_models or ()),
        allowed_networks=tuple(ipaddress.ip_network(c, strict=False) for c in key.allowed_ips or ()),
        rpm=key.rpm,
        tpm=key.tpm,
        daily_cap_micros=key.daily_cap_micros,
        monthly_cap_micros=key.monthly_cap_micros,
        mode=key.mode,
        allows_directives=key.allows_directives,
    )


def operator_token_find(*, secret: str) -> OperatorToken | None:
    """The live token with this secret, or None (unknown or revoked)."""
    return OperatorToken.objects.filter(token_hash=key_hash(secret), revoked_at__isnull=True).first()


def operator_token_get(*, ref: str | int) -> OperatorToken:
    """A token by id, or by name when exactly one token has it. Raises OperatorToken.DoesNotExist."""
    ref = str(ref)
    if ref.isdigit():
        token = OperatorToken.objects.filter(pk=int(ref)).first()
    else:
        found = list(OperatorToken.objects.filter(name=ref)[:2])
        if len(found) > 1:
            raise ValueError(f"several tokens are named {ref!r}; give the id")
        token = found[0] if found else None
    if token is None:
        raise OperatorToken.DoesNotExist(f"no operator token named or numbered {ref!r}")
    return token


def membership_roles_of(*, user) -> dict[int, str]:
    """tenant id -> role, for every tenant the user belongs to."""
    return dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))


def api_key_get(*, key_id: int) -> ApiKey:
    return ApiKey.objects.select_related("tenant").get(pk=key_id)
def memberships_of(*, user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name"))


def api_keys_visible(*, tenant_id: int, user=None) -> list[ApiKey]:
    """A tenant's keys, newest first; only those `user` made when one is given."""
    keys = ApiKey.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")
    if user is not None:
        keys = keys.filter(created_by=user)
    return list(keys)


def api_key_names(*, tenant_id: int) -> dict[int, str]:
    keys = ApiKey.objects.filter(tenant_id=tenant_id).values_list("pk", "name", "prefix")
    return {pk: f"{name or 'unnamed'} ({prefix}…)" for pk, name, prefix in keys}
def tenant_owner_emails(*, tenant_id: int) -> list[str]:
    """Addresses of a tenant's owners (who get its billing alerts)."""
    return sorted(
        {
            email
            for email in Membership.objects.filter(tenant_id=tenant_id, role=Membership.Role.OWNER).values_list("user__email", flat=True)
            if email
        }
    )
