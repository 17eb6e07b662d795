from __future__ import annotations

from django import forms

from billing.forms import MicrosField
from common.cli import INT_MAX

from .models import Invitation, Membership


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="So you can tell your keys apart.")
    models = forms.CharField(required=False, help_text="Comma-separated model ids this key may use; empty: every model.")
    rpm = forms.IntegerField(label="Requests per minute", min_value=1, max_value=INT_MAX, required=False, help_text="Empty: no limit.")
    tpm = forms.IntegerField(label="Tokens per minute", min_value=1, max_value=INT_MAX, required=False, help_text="Empty: no limit.")
    daily_cap = MicrosField(what="a cap", min_micros=0, label="Daily spending cap (USD)", required=False, help_text="Empty: no cap.")
    monthly_cap = MicrosField(what="a cap", min_micros=0, label="Monthly spending cap (USD)", required=False, help_text="Empty: no cap.")
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: never.",
    )
    allowed_ips = forms.CharField(
        label="IP allowlist", required=False, help_text="Comma-separated addresses or CIDRs; empty: anywhere."
    )

    def clean_models(self):
        return _list(self.cleaned_data.get("models", ""))

    def clean_allowed_ips(self):
        return _list(self.cleaned_data.get("allowed_ips", ""))

    def service_fields(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "allowed_models": data["models"],
            "allowed_ips": data["allowed_ips"],
            "rpm": data["rpm"],
            "tpm": data["tpm"],
            "daily_cap_micros": data["daily_cap"],
            "monthly_cap_micros": data["monthly_cap"],
            "expires_at": data["expires_at"],
        }


class RotateForm(forms.Form):
    overlap_s = forms.IntegerField(
        label="Keep the old secret working for (seconds)", min_value=0, initial=3600,
        help_text="0 stops the old secret now; 3600 is an hour, 86400 a day.",
    )


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=Invitation._meta.get_field("email").max_length)
    role = forms.ChoiceField(
        choices=[(Membership.Role.MEMBER, "member"), (Membership.Role.ADMIN, "admin")], initial=Membership.Role.MEMBER
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
