"""The portal's money input: `MicrosField`, and the top-up and low-balance alert forms built on it.

Text becomes money in `billing.money.parse_micros`, which also holds the bound (`MAX_MICROS`, a
billion currency units) before converting; `MicrosField` adds what only a form needs: ASCII
text, a length a person could type, a lower bound per field.
"""

from __future__ import annotations

from django import forms

from .money import format_micros, parse_micros

# '-1000000000.000000' is 18 characters; past 28 significant digits Decimal's context would
# round the text before parse_micros could see its decimal places
MAX_AMOUNT_CHARS = 24


class MicrosField(forms.CharField):
    """An amount typed in currency units ('2.5'), cleaned to integer micros (2_500_000); empty
    is None. `what` names it in errors. `min_micros` None leaves the lower bound to the
    service, whose message says more."""

    def __init__(self, *, what: str, min_micros: int | None = None, **kwargs) -> None:
        self.what, self.min_micros = what, min_micros
        super().__init__(**kwargs)

    def to_python(self, value) -> int | None:
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        if not text.isascii():  # Decimal would take '٣' or '１' for digits
            raise forms.ValidationError(f"{self.what} {text[:MAX_AMOUNT_CHARS]!r} is not a number")
        if len(text) > MAX_AMOUNT_CHARS:
            raise forms.ValidationError(f"{self.what} is longer than {MAX_AMOUNT_CHARS} characters")
        try:
            micros = parse_micros(text, what=self.what)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if self.min_micros is not None and micros < self.min_micros:
            if self.min_micros == 0:
                raise forms.ValidationError(f"{self.what} must not be negative")
            raise forms.ValidationError(f"{self.what} must be at least {format_micros(self.min_micros)}")
        return micros


def errors_text(form: forms.Form) -> str:
    """A form's errors as one line, for pages that show a single error paragraph."""
    return "; ".join(message for messages in form.errors.values() for message in messages)


def micros_text(micros: int | None) -> str:
    """Back to the text the billing services take ('' for none); exact, as format_micros is."""
    return "" if micros is None else format_micros(micros)


class TopupForm(forms.Form):
    # balance and method are checked by payments.topup_create against the tenant's balances
    balance = forms.CharField(required=False)
    amount = MicrosField(what="amount", error_messages={"required": "enter an amount"})
    method = forms.CharField(required=False)


class AlertSettingsForm(forms.Form):
    # zero and below are refused by alerts.alert_settings_set, saying how to turn an alert off
    credit_below = MicrosField(what="Credit threshold", required=False)
    wallet_below = MicrosField(what="Wallet threshold", required=False)
    webhook_url = forms.CharField(required=False)
