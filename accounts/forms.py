from __future__ import annotations

from django import forms

from billing.money import parse_micros

from .models import Membership


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="So you can tell your keys apart.")
    models = forms.CharField(required=False, help_text="Comma-separated model ids this key may use; empty: every model.")
    rpm = forms.IntegerField(label="Requests per minute", min_value=1, required=False, help_text="Empty: no limit.")
    tpm = forms.IntegerField(label="Tokens per minute", min_value=1, required=False, help_text="Empty: no limit.")
    daily_cap = forms.CharField(label="Daily spending cap (USD)", required=False, help_text="Empty: no cap.")
    monthly_cap = forms.CharField(label="Monthly spending cap (USD)", required=False, help_text="Empty: no cap.")
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: never.",
    )
    allowed_ips = forms.CharField(
        label="IP allowlist", required=False, help_text="Comma-separated addresses or CIDRs; empty: anywhere."
    )

    def _cap(self, field: str) -> int | None:
        text = self.cleaned_data.get(field, "").strip()
        if not text:
            return None
        try:
            micros = parse_micros(text, what="cap")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if micros < 0:
            raise forms.ValidationError("a cap must not be negative")
        return micros

    def clean_daily_cap(self):
        return self._cap("daily_cap")

    def clean_monthly_cap(self):
        return self._cap("monthly_cap")

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
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(
        choices=[(Membership.Role.MEMBER, "member"), (Membership.Role.ADMIN, "admin")], initial=Membership.Role.MEMBER
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
