"""allauth's hooks into our services: a new user gets a tenant of their own."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter

from .services import tenant_signup


class PortalAccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            tenant_signup(user=user)
        return user
