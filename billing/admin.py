"""Operators see money in the admin but change it only through ledger entries: balances, holds
and entries are read-only; "Add ledger entry" makes a correcting adjustment through
`billing.services.balance_credit`, like the `credit` command."""

import base64
import csv
import io
import uuid

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from observability.admin_audit import AuditedAdmin

from . import ratecard
from .models import (
    Alert,
    AlertSettings,
    Balance,
    BalanceKind,
    ExchangeRate,
    Group,
    Hold,
    KeySpend,
    LedgerEntry,
    Payment,
    Price,
    PriceChange,
    RedemptionBatch,
    StripeEvent,
)
from .money import format_micros, parse_micros
from .services import balance_credit, price_values_check, redemption_batch_create


class ReadOnlyAdmin(AuditedAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "kind", "currency", "amount", "held")
    list_filter = ("kind", "currency")
    search_fields = ("tenant__name",)

    @admin.display(description="amount")
    def amount(self, obj):
        return format_micros(obj.amount_micros)

    @admin.display(description="held for requests in flight")
    def held(self, obj):
        return format_micros(obj.held_micros)


class AdjustmentForm(forms.ModelForm):
    """A new correcting entry: the amount in currency units, + to add, - to take away."""

    tenant = forms.ModelChoiceField(queryset=None)
    which = forms.ChoiceField(choices=BalanceKind.choices, label="balance")
    amount = forms.CharField(help_text="in the balance's currency, e.g. 2.5 or -1")

    class Meta:
        model = LedgerEntry
        fields = ("note",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tenants = Balance._meta.get_field("tenant").related_model  # billing reads tenants, never the reverse
        self.fields["tenant"].queryset = tenants.objects.order_by("name")
        self.fields["note"].required = True

    def clean_amount(self):
        try:
            value = parse_micros(self.cleaned_data["amount"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if value == 0:
            raise forms.ValidationError("amount must not be zero")
        return value


@admin.register(LedgerEntry)
class LedgerEntryAdmin(AuditedAdmin):
    list_display = ("id", "created_at", "balance", "kind", "amount", "balance_after", "request_id", "note")
    list_filter = ("kind", "balance__kind")
    search_fields = ("request_id", "idempotency_key", "balance__tenant__name", "note")
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            return AdjustmentForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            entry = balance_credit(
                tenant_id=data["tenant"].pk, kind=data["which"], amount_micros=data["amount"],
                idempotency_key=f"admin:{request.user.pk}:{uuid.uuid4().hex}", note=f"{data['note']} (by {request.user})",
            )
        except ValueError as exc:
            messages.error(request, str(exc))
            return
        obj.pk = entry.pk

    @admin.display(description="amount")
    def amount(self, obj):
        return format_micros(obj.amount_micros)

    @admin.display(description="balance after")
    def balance_after(self, obj):
        return format_micros(obj.balance_after_micros)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "balance", "model", "amount_micros", "charged_micros", "status", "created_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("request_id",)


@admin.register(KeySpend)
class KeySpendAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "period", "starts_on", "spent_micros", "held_micros")
    list_filter = ("period",)


class RateCardAdmin(AuditedAdmin):
    """Prices, groups and rates are configuration; the hot path's copy is refreshed on save."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        ratecard.invalidate()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        ratecard.invalidate()


class PriceForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = "__all__"

    def clean(self):
        values = super().clean()
        try:
            price_values_check(values)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
        return values


@admin.register(Price)
class PriceAdmin(RateCardAdmin):
    form = PriceForm
    list_display = ("model", "input_micros_per_m", "output_micros_per_m", "cached_input_micros_per_m", "request_micros", "is_free", "updated_at")
    search_fields = ("model",)
    list_filter = ("is_free",)


@admin.register(Group)
class GroupAdmin(RateCardAdmin):
    list_display = ("name", "ratio", "mode")


@admin.register(ExchangeRate)
class ExchangeRateAdmin(RateCardAdmin):
    list_display = ("currency", "units_per_usd", "updated_at")


@admin.register(PriceChange)
class PriceChangeAdmin(ReadOnlyAdmin):
    """The pricing sync's history; a proposal is applied with the action (or `sync_prices --accept-proposed`)."""

    list_display = ("model", "status", "old_input_micros_per_m", "new_input_micros_per_m", "old_output_micros_per_m", "new_output_micros_per_m", "markup", "source", "created_at", "decided_at")
    list_filter = ("status",)
    search_fields = ("model", "source")
    actions = ("accept",)

    def has_accept_permission(self, request):
        """Accepting a proposal changes a price: the one who may do it may change prices."""
        return request.user.has_perm("billing.change_price")

    @admin.action(description="Apply the selected proposals", permissions=["accept"])
    def accept(self, request, queryset):
        from .sync import price_change_accept

        applied = 0
        for change in queryset.filter(status=PriceChange.Status.PROPOSED):
            price_change_accept(change_id=change.pk)
            applied += 1
        self.message_user(request, f"{applied} proposal(s) applied")


# --- payments, redemption codes, alerts ----------------------------------------------------------


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Every Stripe top-up. Money is read-only here; `outstanding` is what Stripe took back
    (refund, dispute) after the customer had spent it: the operator's to settle (docs/payments.md)."""

    list_display = ("id", "created_at", "tenant", "balance_kind", "amount", "currency", "method", "status", "refunded", "outstanding", "receipt")
    list_filter = ("status", "method", "currency")
    search_fields = ("tenant__name", "session_id", "payment_intent_id")
    date_hierarchy = "created_at"

    @admin.display(description="amount")
    def amount(self, obj):
        return format_micros(obj.amount_micros)

    @admin.display(description="refunded")
    def refunded(self, obj):
        return format_micros(obj.refunded_micros + obj.disputed_micros)

    @admin.display(description="outstanding (spent before taken back)")
    def outstanding(self, obj):
        return format_micros(obj.outstanding_micros)

    @admin.display(description="receipt")
    def receipt(self, obj):
        return format_html('<a href="{}" rel="noopener noreferrer">receipt</a>', obj.receipt_url) if obj.receipt_url else "-"


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "status", "deliveries", "payment", "received_at", "error")
    list_filter = ("status", "type")
    search_fields = ("event_id",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "tenant", "kind", "subject", "status", "attempts", "last_error", "sent_at")
    list_filter = ("status", "kind")


@admin.register(AlertSettings)
class AlertSettingsAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "credit_below_micros", "wallet_below_micros", "credit_is_low", "wallet_is_low", "webhook_url")
    exclude = ("webhook_secret",)


class RedemptionBatchForm(forms.ModelForm):
    amount = forms.CharField(help_text="per code, in the balance's currency (Credit USD, Wallet CNY)")

    class Meta:
        model = RedemptionBatch
        fields = ("balance_kind", "count", "expires_at", "note")

    def clean_amount(self):
        try:
            value = parse_micros(self.cleaned_data["amount"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if value <= 0:
            raise forms.ValidationError("amount must be positive")
        return value


@admin.register(RedemptionBatch)
class RedemptionBatchAdmin(AuditedAdmin):
    """Generate codes: they are shown once, on the page after "Save", with a CSV download;
    only their hashes are stored."""

    list_display = ("id", "created_at", "balance_kind", "amount", "currency", "count", "redeemed", "expires_at", "note")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            return RedemptionBatchForm
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="amount")
    def amount(self, obj):
        return format_micros(obj.amount_micros)

    @admin.display(description="redeemed")
    def redeemed(self, obj):
        return obj.codes.filter(redeemed_at__isnull=False).count()

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        batch, codes = redemption_batch_create(
            kind=data["balance_kind"], amount_micros=data["amount"], count=data["count"],
            expires_at=data["expires_at"], note=data["note"],
        )
        obj.pk, obj.currency, obj.amount_micros, obj.created_at = batch.pk, batch.currency, batch.amount_micros, batch.created_at
        request._redemption_codes = (batch, codes)

    def response_add(self, request, obj, post_url_continue=None):
        batch, codes = request._redemption_codes
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["code", "balance", "amount", "currency", "expires_at"])
        for code in codes:
            writer.writerow([code, batch.balance_kind, format_micros(batch.amount_micros), batch.currency, batch.expires_at or ""])
        csv_data = base64.b64encode(out.getvalue().encode()).decode()
        return TemplateResponse(
            request,
            "admin/billing/redemption_codes.html",
            {**self.admin_site.each_context(request), "batch": batch, "codes": codes, "csv_data": csv_data, "title": "Redemption codes"},
        )
