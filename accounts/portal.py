"""Who may do what in the portal: roles are enforced here, from the one table in
`accounts.roles` that the management API asks too.

    owner   everything an admin may, and billing (balances' ledger, top-up, redeem)
    admin   every key of the tenant, the team (invite, change roles, remove)
    member  their own keys; usage, request logs, prices and the quickstart

A view says what it needs with `@portal_view(permission="keys.all")`; the decorator signs the
visitor in, picks their current tenant (`current_membership`), and answers 403 with what to do
next when the role does not allow it. Objects are always looked up within `request.tenant`, so
another tenant's id is a 404, never a 403.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from .models import Membership
from .roles import PERMISSIONS, ROLE_PERMISSIONS, role_allows  # noqa: F401  (ROLE_PERMISSIONS: re-exported for the pages' tests)
from .selectors import memberships_of

SESSION_TENANT = "portal_tenant_id"


def current_membership(request) -> Membership | None:
    """The signed-in user's membership in the tenant they are working in (the one they last
    switched to, else their first); None when they belong to none."""
    if not request.user.is_authenticated:
        return None
    cached = getattr(request, "_portal_membership", None)
    if cached is not None:
        return cached
    memberships = memberships_of(user=request.user)
    if not memberships:
        return None
    wanted = request.session.get(SESSION_TENANT)
    membership = next((m for m in memberships if m.tenant_id == wanted), memberships[0])
    request._portal_membership = membership
    request._portal_memberships = memberships
    return membership


def membership_switch(request, *, tenant_id: int) -> Membership | None:
    """Make another of the user's tenants the current one; None if they are not in it."""
    membership = next((m for m in memberships_of(user=request.user) if m.tenant_id == tenant_id), None)
    if membership is not None:
        request.session[SESSION_TENANT] = tenant_id
        request._portal_membership = None
    return membership


def portal_view(permission: str = "view"):
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown portal permission {permission!r}")

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = current_membership(request)
            if membership is None:
                return render(request, "portal/no_team.html", status=403)
            if not role_allows(role=membership.role, permission=permission):
                return render(
                    request, "portal/forbidden.html", {"permission": permission, "role": membership.role}, status=403
                )
            request.membership = membership
            request.tenant = membership.tenant
            return view(request, *args, **kwargs)

        wrapper.portal_permission = permission
        return wrapper

    return decorate


def portal_context(request) -> dict:
    """What the layout needs: the current team, the others to switch to, what the role allows."""
    membership = current_membership(request) if hasattr(request, "user") else None
    if membership is None:
        return {}
    return {
        "portal_membership": membership,
        "portal_memberships": getattr(request, "_portal_memberships", []),
        "portal_can": {p.replace(".", "_"): role_allows(role=membership.role, permission=p) for p in PERMISSIONS},
    }
