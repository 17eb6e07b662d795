from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.selectors import group_exists
from billing.services import balance_credit
from channels.selectors import model_ids_existing
from channels.strategies import MODES
from common.config_version import config_changed

from .models import ApiKey, Invitation, Membership, OperatorToken, Tenant
from .selectors import key_hash

KEY_PREFIX = "sk-"


class InvalidInput(ValueError):
    """Bad input to an accounts service; the message says which and why."""


@transaction.atomic
def tenant_create(*, name: str, group: str = "default", timezone: str = "UTC") -> Tenant:
    name = tenant_name_check(name=name)
    if not group or not group.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"group {group!r} must be letters, digits, - or _")
    if not group_exists(name=group):
        raise InvalidInput(f"unknown group {group!r}: groups are made in the admin (billing > groups) or with import_config")
    return Tenant.objects.create(name=name, group=group, timezone=timezone_check(name=timezone))


def tenant_name_check(*, name: str, tenant: Tenant | None = None) -> str:
    """`name` stripped, if a tenant (`tenant`, when renaming) may take it, else InvalidInput.
    Never only digits: commands take TENANT as a name or an id, and such a name would hide the
    tenant with that id."""
    name = name.strip()
    if not name:
        raise InvalidInput("tenant name must not be empty")
    if name.isdigit():
        raise InvalidInput(f"tenant name {name!r} is only digits, which commands would read as a tenant id; add a letter")
    if Tenant.objects.filter(name=name).exclude(pk=tenant.pk if tenant else None).exists():
        raise InvalidInput(f"a tenant named {name!r} exists already")
    return name


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
    created_by=None,
) -> tuple[ApiKey, str]:
    """Make a key; returns it and its secret, which is never stored and never shown again."""
    _check_limits(rpm=rpm, tpm=tpm, daily_cap_micros=daily_cap_micros, monthly_cap_micros=monthly_cap_micros, allowed_ips=allowed_ips)
    _check_key_fields(allowed_models=allowed_models, mode=mode)
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
    """Both the current secret and one still inside a rotation's window stop at once."""
    ApiKey.objects.filter(pk=key.pk).update(status=ApiKey.Status.REVOKED)
    key.refresh_from_db(fields=["status", "key_hash", "previous_key_hash"])
    config_changed()  # update() sends no signal; every process drops its cached policies
    return key


@transaction.atomic
def api_key_rotate(*, key_id: int, overlap_s: int) -> tuple[ApiKey, str]:
    """Give a key a new secret. The old one keeps working for `overlap_s` seconds (0: it stops
    now), then stops; a secret from an earlier rotation stops at once. Limits, caps and spend
    stay with the key."""
    if overlap_s < 0 or overlap_s > settings.KEY_ROTATION_MAX_OVERLAP_S:
        raise InvalidInput(f"the overlap must be between 0 and {settings.KEY_ROTATION_MAX_OVERLAP_S} seconds")
    key = ApiKey.objects.select_for_update().get(pk=key_id)
    if key.status != ApiKey.Status.ACTIVE:
        raise InvalidInput("a revoked key cannot be rotated; create a new key instead")
    secret = KEY_PREFIX + secrets.token_urlsafe(36)
    if overlap_s:
        key.previous_key_hash = key.key_hash
        key.previous_expires_at = timezone.now() + timedelta(seconds=overlap_s)
    else:
        key.previous_key_hash = None
        key.previous_expires_at = None
    key.key_hash = key_hash(secret)
    key.prefix = secret[:10]
    key.save(update_fields=["previous_key_hash", "previous_expires_at", "key_hash", "prefix"])
    return key, secret


def api_keys_touch(*, last_used_at_by_key: dict[int, datetime]) -> int:
    """Record when keys were last used (called by the batched request-log flush, never per
    request). Only moves forward."""
    touched = 0
    for key_id, used_at in last_used_at_by_key.items():
        touched += ApiKey.objects.filter(pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=used_at)
        ).update(last_used_at=used_at)
    return touched


def _check_limits(*, allowed_ips=None, **limits) -> None:
    for label, value in limits.items():
        if value is not None and value < 0:
            raise InvalidInput(f"{label.replace('_micros', '').replace('_', ' ')} must not be negative")
        if value == 0 and label in ("rpm", "tpm"):  # the relay reads 0 as no limit: the opposite of what was asked
            raise InvalidInput(f"{label} must be at least 1 (leave it out for no limit)")
    for cidr in allowed_ips or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(f"{cidr!r} is not an IP address or CIDR") from None


def _check_key_fields(*, allowed_models=None, mode: str | None = None) -> None:
    """What a key may be given, on every path (API, CLI, portal, admin): catalog models and a
    known routing mode. An expiry already past is accepted: the key is refused as expired from
    its first request (what an operator scripting an expired key for a check expects)."""
    unknown = sorted(set(allowed_models or ()) - model_ids_existing(ids=list(allowed_models or ())))
    if unknown:
        raise InvalidInput(f"unknown model(s): {', '.join(unknown)} (public model ids of the catalog)")
    if mode and mode not in MODES:
        raise InvalidInput(f"unknown routing mode {mode!r}; one of {', '.join(MODES)}")


UPDATABLE = frozenset(
    {"name", "allowed_models", "allowed_ips", "rpm", "tpm", "daily_cap_micros", "monthly_cap_micros", "expires_at", "mode"}
)


def api_key_update(*, key: ApiKey, **fields) -> ApiKey:
    """Change a key's name or limits (never its secret, tenant or status: rotate and revoke do)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a key")
    _check_limits(
        allowed_ips=fields.get("allowed_ips"),
        **{k: fields[k] for k in ("rpm", "tpm", "daily_cap_micros", "monthly_cap_micros") if k in fields},
    )
    # only what changes: a key whose model has left the catalog can still be renamed
    _check_key_fields(
        allowed_models=sorted(set(fields.get("allowed_models") or ()) - set(key.allowed_models or ())),
        mode=fields.get("mode"),
    )
    for name, value in fields.items():
        setattr(key, name, value)
    key.save(update_fields=list(fields))
    return key


def tenant_set_status(*, tenant: Tenant, status: str) -> Tenant:
    if status not in Tenant.Status.values:
        raise InvalidInput(f"status must be one of {', '.join(Tenant.Status.values)}, not {status!r}")
    tenant.status = status
    tenant.save(update_fields=["status"])
    return tenant


def tenant_update(*, tenant: Tenant, name: str | None = None, group: str | None = None, status: str | None = None) -> Tenant:
    """Rename, regroup, suspend or reactivate a tenant; its keys see the change on their next request."""
    if name is not None:
        tenant.name = tenant_name_check(name=name, tenant=tenant)
    if group is not None:
        if not group or not group.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(f"group {group!r} must be letters, digits, - or _")
        if not group_exists(name=group):
            raise InvalidInput(f"unknown group {group!r}: groups are made in the admin (billing > groups) or with import_config")
        tenant.group = group
    if name is not None or group is not None:
        tenant.save(update_fields=["name", "group"])
    if status is not None:
        tenant_set_status(tenant=tenant, status=status)
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


# --- the portal: sign-up and teams -----------------------------------------------------------


def _free_tenant_name(base: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-")[:80] or "team"
    if base.isdigit():  # 12345@example.com: a name of digits only is refused (tenant_name_check)
        base += "-team"
    name, n = base, 1
    while Tenant.objects.filter(name=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


@transaction.atomic
def tenant_signup(*, user) -> Membership:
    """A new portal user's own tenant, which they own; with SIGNUP_CREDIT_USD on its Credit
    balance when that is set (once per user: the ledger key names the user)."""
    tenant = tenant_create(name=_free_tenant_name(user.email.split("@")[0]))
    membership = Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.OWNER)
    if settings.SIGNUP_CREDIT_USD and settings.SIGNUP_CREDIT_USD != "0":
        balance_credit(
            tenant_id=tenant.pk, kind="credit", amount=settings.SIGNUP_CREDIT_USD,
            idempotency_key=f"signup:{user.pk}", note="sign-up credit",
        )
    return membership


def invitation_create(*, tenant: Tenant, email: str, role: str, invited_by) -> tuple[Invitation, str]:
    """An invitation and its token (for the emailed link; only its hash is kept)."""
    email = email.strip().lower()
    if role not in (Membership.Role.ADMIN, Membership.Role.MEMBER):
        raise InvalidInput("an invitation makes an admin or a member; ownership is not handed out by email")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise InvalidInput(f"{email} is in this team already")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        tenant=tenant, email=email, role=role, token_hash=key_hash(token), invited_by=invited_by,
        expires_at=timezone.now() + timedelta(seconds=settings.INVITATION_TTL_S),
    )
    return invitation, token


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    """Join the team the link invites to. The link works once, before it expires, and only for
    the address it was sent to."""
    invitation = Invitation.objects.select_for_update().filter(token_hash=key_hash(token)).first()
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= timezone.now():
        raise InvalidInput("this invitation is not valid any more; ask the team for a new one")
    if invitation.email.lower() != (user.email or "").lower():
        raise InvalidInput(f"this invitation was sent to {invitation.email}; sign in with that address to accept it")
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    membership, created = Membership.objects.get_or_create(
        user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    return membership


def invitation_revoke(*, invitation: Invitation) -> None:
    invitation.delete()


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str) -> Membership:
    role = _role(role)
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
        _keep_an_owner(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    if membership.role == Membership.Role.OWNER:
        _keep_an_owner(membership)
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


def _keep_an_owner(membership: Membership) -> None:
    others = Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER).exclude(pk=membership.pk)
    if not others.exists():
        raise InvalidInput("a team keeps at least one owner; make someone else owner first")
