from __future__ import annotations

import hashlib
import ipaddress

from .models import ApiKey, Membership, Tenant
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
    key = ApiKey.objects.select_related("tenant").filter(key_hash=key_hash).first()
    if key is None:
        return None
    return key_policy_from(key)


def key_policy_from(key: ApiKey) -> KeyPolicy:
    tenant = key.tenant
    return KeyPolicy(
        key_id=key.pk,
        key_prefix=key.prefix,
        tenant_id=tenant.pk,
        tenant_name=tenant.name,
        tenant_group=tenant.group,
        tenant_timezone=tenant.timezone,
        is_tenant_active=tenant.status == Tenant.Status.ACTIVE,
        is_revoked=key.status == ApiKey.Status.REVOKED,
        expires_at=key.expires_at,
        allowed_models=frozenset(key.allowed_models or ()),
        allowed_networks=tuple(ipaddress.ip_network(c, strict=False) for c in key.allowed_ips or ()),
        rpm=key.rpm,
        tpm=key.tpm,
        daily_cap_micros=key.daily_cap_micros,
        monthly_cap_micros=key.monthly_cap_micros,
        mode=key.mode,
        allows_directives=key.allows_directives,
    )


def tenant_owner_emails(*, tenant_id: int) -> list[str]:
    """Addresses of a tenant's owners (who get its billing alerts)."""
    return sorted(
        {
            email
            for email in Membership.objects.filter(tenant_id=tenant_id, role=Membership.Role.OWNER).values_list("user__email", flat=True)
            if email
        }
    )
