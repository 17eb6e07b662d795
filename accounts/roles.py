"""What each role in a tenant may do: the one table every caller (management API, and the
portal once merged) asks, so that a role means the same everywhere.

    member  reads usage and request logs; makes, sees and revokes only the keys they made
    admin   also every key of the tenant, and the members (but cannot make or unmake owners)
    owner   also billing (balances, ledger) and owners
"""

from __future__ import annotations

from .models import Membership

USAGE_READ = "usage.read"
KEYS_OWN = "keys.own"
KEYS_ALL = "keys.all"
MEMBERS_READ = "members.read"
MEMBERS_MANAGE = "members.manage"
OWNERS_MANAGE = "owners.manage"
BILLING_READ = "billing.read"
TENANT_READ = "tenant.read"

_MEMBER = frozenset({TENANT_READ, USAGE_READ, KEYS_OWN})
_ADMIN = _MEMBER | {KEYS_ALL, MEMBERS_READ, MEMBERS_MANAGE}
_OWNER = _ADMIN | {OWNERS_MANAGE, BILLING_READ}

PERMISSIONS: dict[str, frozenset[str]] = {
    Membership.Role.MEMBER: _MEMBER,
    Membership.Role.ADMIN: frozenset(_ADMIN),
    Membership.Role.OWNER: frozenset(_OWNER),
}


def role_allows(*, role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())
