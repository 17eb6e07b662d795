"""What each role in a tenant may do: the one table the portal (`accounts.portal`) and the
management API (`accounts.apiauth`) both ask, so that a role means the same everywhere.

    member  reads usage and request logs, prices and the quickstart; makes, sees and revokes
            only the keys they made; runs research (billed to the tenant)
    admin   also every key of the tenant, and the team (invite, change roles, remove), but
            cannot make or unmake owners
    owner   also billing (balances, ledger, top-up, redeem) and owners
"""

from __future__ import annotations

from .models import Membership

# the management API's names
TENANT_READ = "tenant.read"
USAGE_READ = "usage.read"
KEYS_OWN = "keys.own"
KEYS_ALL = "keys.all"
MEMBERS_READ = "members.read"
MEMBERS_MANAGE = "members.manage"
OWNERS_MANAGE = "owners.manage"
BILLING_READ = "billing.read"
# the portal's names for the same rights (its pages ask with these)
VIEW, USAGE, TEAM, BILLING = "view", "usage", "team", "billing"
RESEARCH = "research"  # start, re-open, duplicate and delete research runs (billed to the tenant)

MEMBER_PERMISSIONS = frozenset({TENANT_READ, USAGE_READ, KEYS_OWN, VIEW, USAGE, RESEARCH})
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | {KEYS_ALL, MEMBERS_READ, MEMBERS_MANAGE, TEAM}
OWNER_PERMISSIONS = ADMIN_PERMISSIONS | {OWNERS_MANAGE, BILLING_READ, BILLING}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Membership.Role.MEMBER: MEMBER_PERMISSIONS,
    Membership.Role.ADMIN: frozenset(ADMIN_PERMISSIONS),
    Membership.Role.OWNER: frozenset(OWNER_PERMISSIONS),
}
PERMISSIONS = frozenset(OWNER_PERMISSIONS)  # every permission there is


def role_allows(*, role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role, frozenset())
