"""The portal's one place for roles (minimal version on the payments branch; the portal
branch's replaces it with the same names).

    current_membership(request)  the signed-in user's active Membership (.tenant, .role)
    portal_view(permission=...)  view decorator: sign-in required, then the permission
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseForbidden

from .models import Membership

# permission -> roles that have it ("billing": the owner also pays)
PERMISSIONS = {
    "view": {"owner", "admin", "member"},
    "billing": {"owner"},
}


def current_membership(request) -> Membership | None:
    if not request.user.is_authenticated:
        return None
    return Membership.objects.select_related("tenant").filter(user=request.user).order_by("id").first()


def portal_view(permission: str = "view"):
    allowed = PERMISSIONS[permission]

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = current_membership(request)
            if membership is None or membership.role not in allowed:
                return HttpResponseForbidden("You do not have permission to see this page.")
            request.membership = membership
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
