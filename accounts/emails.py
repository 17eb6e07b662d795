"""Mail the portal sends itself (allauth sends verification and password reset)."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from .models import Invitation


def invitation_send(request, *, invitation: Invitation, token: str) -> None:
    link = request.build_absolute_uri(reverse("portal-invitation", kwargs={"token": token}))
    inviter = request.user.email or "A teammate"
    send_mail(
        subject=f"[TokenHub] {inviter} invited you to {invitation.tenant.name}",
        message=(
            f"{inviter} invited you to join {invitation.tenant.name} on TokenHub as {invitation.role}.\n\n"
            f"Open this link to accept (sign up first with this address if you have no account):\n{link}\n\n"
            f"The link works once, for {settings.INVITATION_TTL_S // 86400} days.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )
