"""Billing's pages (top-up, receipts, redeem, balance alerts) and Stripe's webhook endpoint.
Views parse input, call one service, shape the page; the rules live in the services."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.portal import current_membership, portal_view

from . import alerts, attempts, payments, selectors, stripe_gateway
from .forms import AlertSettingsForm, TopupForm, errors_text, micros_text
from .models import StripeEvent
from .money import format_micros
from .services import BALANCE_LABEL, RedemptionRefused, redemption_redeem


def _absolute(request, name: str) -> str:
    path = reverse(name)
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL.rstrip("/") + path
    return request.build_absolute_uri(path)


def _topup_context(request, tenant) -> dict:
    balances = selectors.balances_get(tenant_id=tenant.pk)
    options = []
    for kind, balance in balances.items():
        low, high = payments.topup_bounds_micros(currency=balance.currency)
        options.append(
            {
                "kind": kind,
                "label": BALANCE_LABEL[kind],
                "currency": balance.currency,
                "amount": format_micros(balance.amount_micros),
                "methods": payments.topup_methods(currency=balance.currency),
                "min": format_micros(low),
                "max": format_micros(high),
            }
        )
    return {
        "tenant": tenant,
        "balances": options,
        "is_configured": stripe_gateway.is_configured(),
        "payments": selectors.payments_list(tenant_id=tenant.pk),
        "alert_settings": alerts.alert_settings_get(tenant_id=tenant.pk),
    }


@portal_view(permission="billing")
def topup(request):
    tenant = current_membership(request).tenant
    if request.method == "POST":
        form = TopupForm(request.POST)
        if not form.is_valid():
            return render(request, "billing/topup.html", {**_topup_context(request, tenant), "error": errors_text(form)}, status=400)
        try:
            payment = payments.topup_create(
                tenant_id=tenant.pk,
                kind=form.cleaned_data["balance"],
                amount=micros_text(form.cleaned_data["amount"]),
                method=form.cleaned_data["method"] or None,
                success_url=_absolute(request, "billing:topup_success") + "?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=_absolute(request, "billing:topup_cancel") + "?session_id={CHECKOUT_SESSION_ID}",
                user_id=request.user.pk,
            )
        except payments.PaymentError as exc:
            return render(request, "billing/topup.html", {**_topup_context(request, tenant), "error": str(exc)}, status=400)
        return redirect(payment.checkout_url, permanent=False)
    return render(request, "billing/topup.html", _topup_context(request, tenant))


@portal_view(permission="billing")
def topup_success(request):
    tenant = current_membership(request).tenant
    payment = selectors.payment_get(tenant_id=tenant.pk, session_id=request.GET.get("session_id", ""))
    return render(request, "billing/topup_done.html", {**_topup_context(request, tenant), "payment": payment, "is_cancelled": False})


@portal_view(permission="billing")
def topup_cancel(request):
    tenant = current_membership(request).tenant
    payment = selectors.payment_get(tenant_id=tenant.pk, session_id=request.GET.get("session_id", ""))
    return render(request, "billing/topup_done.html", {**_topup_context(request, tenant), "payment": payment, "is_cancelled": True})


@portal_view(permission="billing")
@require_POST
def alerts_update(request):
    tenant = current_membership(request).tenant
    form = AlertSettingsForm(request.POST)
    if not form.is_valid():
        return render(request, "billing/topup.html", {**_topup_context(request, tenant), "alert_error": errors_text(form)}, status=400)
    try:
        _, new_secret = alerts.alert_settings_set(
            tenant_id=tenant.pk,
            credit_below=micros_text(form.cleaned_data["credit_below"]),
            wallet_below=micros_text(form.cleaned_data["wallet_below"]),
            webhook_url=form.cleaned_data["webhook_url"],
        )
    except ValueError as exc:
        return render(request, "billing/topup.html", {**_topup_context(request, tenant), "alert_error": str(exc)}, status=400)
    if new_secret:  # shown this once, like an API key
        return render(request, "billing/topup.html", {**_topup_context(request, tenant), "webhook_secret_once": new_secret})
    return redirect("billing:topup")


def _client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


@portal_view(permission="billing")
def redeem(request):
    tenant = current_membership(request).tenant
    context = {"balances": _topup_context(request, tenant)["balances"]}
    if request.method != "POST":
        return render(request, "billing/redeem.html", context)
    window_s, limit = settings.REDEEM_WINDOW_S, settings.REDEEM_MAX_ATTEMPTS
    by_user = attempts.attempt_count(scope="redeem-user", ident=str(request.user.pk), window_s=window_s)
    by_address = attempts.attempt_count(scope="redeem-addr", ident=_client_address(request), window_s=window_s)
    if by_user > limit or by_address > limit:
        response = render(request, "billing/redeem.html", {**context, "error": "Too many attempts. Try again later."}, status=429)
        response["Retry-After"] = str(attempts.attempts_retry_after_s(window_s=window_s))
        return response
    try:
        entry = redemption_redeem(tenant_id=tenant.pk, code=request.POST.get("code", ""))
    except RedemptionRefused as exc:
        return render(request, "billing/redeem.html", {**context, "error": str(exc)}, status=400)
    context = {"balances": _topup_context(request, tenant)["balances"]}
    credited = f"{format_micros(entry.amount_micros)} {entry.balance.currency} added to your {BALANCE_LABEL[entry.balance.kind]}"
    return render(request, "billing/redeem.html", {**context, "credited": credited})


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe's deliveries. 400: signature does not verify (nothing stored); 500: the handler
    failed (stored; Stripe retries); 200 otherwise, also for types we ignore."""
    try:
        event = payments.stripe_event_apply(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except stripe_gateway.SignatureInvalid:
        return JsonResponse({"error": "invalid signature"}, status=400)
    if event.status == StripeEvent.Status.FAILED:
        return JsonResponse({"error": "the event could not be applied; it is kept and will be retried"}, status=500)
    return JsonResponse({"received": True, "status": event.status})


