"""allauth's hooks into our services: a new user gets a tenant of their own."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.contrib.auth import get_user_model

from .services import tenant_signup


class PortalAccountAdapter(DefaultAccountAdapter):
    def clean_email(self, email: str) -> str:
        # allauth cuts the user's email to its column while the confirmation goes to the whole
        # address: refused here, the signup, add-email and reset forms all ask
        limit = get_user_model()._meta.get_field("email").max_length
        if len(email) > limit:
            raise forms.ValidationError(f"An email address has at most {limit} characters.")
        return super().clean_email(email)

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            tenant_signup(user=user)
        return user
