"""Top-ups through Stripe Checkout and the webhook events that settle them (services).

    topup_create         a Checkout Session and its pending Payment; nothing is credited
    stripe_event_apply   a verified event, stored once by id, then acted on in the same transaction

Rules:
- a balance is credited only by a verified event saying the session is paid
  (`checkout.session.completed` with payment_status=paid, or
  `checkout.session.async_payment_succeeded`), exactly once per session: the Payment row is
  locked, its status moves pending -> paid once, and the ledger key `stripe:paid:<session>` is
  unique whatever the number, order or concurrency of deliveries;
- an event for a session we never made credits nothing and is stored as ignored;
- refunds (`charge.refunded`) and disputes (`charge.dispute.created` / `.closed`) are ledger
  entries of their own (kind `refund`). Policy when the money was spent: debit what the balance
  has available, record the rest as the payment's `outstanding_micros` for the operator; never a
  negative balance (docs/payments.md).
"""

from __future__ import annotations

import logging
import secrets
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import stripe_gateway
from .models import Balance, LedgerEntry, Payment, StripeEvent
from .money import format_micros, parse_micros
from .services import BALANCE_LABEL, balance_credit, balances_open

log = logging.getLogger(__name__)

MICROS_PER_MINOR = stripe_gateway.MICROS_PER_MINOR


class PaymentError(ValueError):
    """A top-up that cannot be made; the message says why and is safe to show."""


def topup_methods(*, currency: str) -> list[str]:
    """The payment methods the operator enabled for a currency (settings TOPUP_METHODS)."""
    return [m for m in settings.TOPUP_METHODS.get(currency.upper(), []) if m in Payment.Method.values]


def topup_bounds_micros(*, currency: str) -> tuple[int, int]:
    low, high = settings.TOPUP_BOUNDS.get(currency.upper(), ["1", "10000"])
    return parse_micros(low, what="TOPUP_BOUNDS minimum"), parse_micros(high, what="TOPUP_BOUNDS maximum")


def topup_create(
    *,
    tenant_id: int,
    kind: str,
    amount: str | Decimal,
    method: str | None,
    success_url: str,
    cancel_url: str,
    user_id: int | None = None,
) -> Payment:
    """A Stripe Checkout Session for `amount` (currency units) on one balance, and its pending
    Payment. Bad input raises PaymentError before Stripe is called."""
    if not stripe_gateway.is_configured():
        raise PaymentError("top-up is not configured (STRIPE_SECRET_KEY is not set); redeem a code instead")
    balance = next((b for b in balances_open(tenant_id=tenant_id) if b.kind == kind), None)
    if balance is None:
        raise PaymentError(f"balance must be credit or wallet, not {kind!r}")
    currency = balance.currency
    if currency not in stripe_gateway.CURRENCIES:
        raise PaymentError(f"top-up in {currency} is not supported")
    methods = topup_methods(currency=currency)
    if not methods:
        raise PaymentError(f"no payment method is enabled for {currency} top-ups")
    method = method or methods[0]
    if method not in methods:
        raise PaymentError(f"method {method!r} is not enabled for {currency} (enabled: {', '.join(methods)})")
    try:
        amount_micros = parse_micros(amount, what="amount")
    except ValueError as exc:
        raise PaymentError(str(exc)) from None
    low, high = topup_bounds_micros(currency=currency)
    if not low <= amount_micros <= high:
        raise PaymentError(f"amount must be between {format_micros(low)} and {format_micros(high)} {currency}")
    if amount_micros % MICROS_PER_MINOR:
        raise PaymentError(f"amount {amount} has more than 2 decimal places")
    label = BALANCE_LABEL[balance.kind]
    reference = f"th-{tenant_id}-{secrets.token_hex(12)}"  # also Stripe's idempotency key for this call
    try:
        session = stripe_gateway.checkout_session_create(
            amount_minor=amount_micros // MICROS_PER_MINOR,
            currency=currency,
            method=method,
            product_name=f"TokenHub {label} top-up",
            success_url=success_url,
            cancel_url=cancel_url,
            client_reference_id=reference,
            metadata={"tenant_id": str(tenant_id), "balance": balance.kind},
            idempotency_key=reference,
        )
    except stripe_gateway.GatewayError as exc:
        raise PaymentError(str(exc)) from None
    return Payment.objects.create(
        tenant_id=tenant_id,
        balance_kind=balance.kind,
        currency=currency,
        amount_micros=amount_micros,
        method=method,
        session_id=session["id"],
        checkout_url=session.get("url") or "",
        reference=reference,
        created_by_user_id=user_id,
    )


# --- webhook events ----------------------------------------------------------------------------


class _Ignored(Exception):
    """Nothing to do for this event (e.g. a session we never made); stored with the reason."""


def stripe_event_apply(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify, store once, act once. Raises stripe_gateway.SignatureInvalid (nothing stored)."""
    data = stripe_gateway.event_verify(payload=payload, signature=signature)
    with transaction.atomic():
        event, created = StripeEvent.objects.get_or_create(
            event_id=data["id"],
            defaults={"type": str(data.get("type", ""))[:100], "status": StripeEvent.Status.FAILED, "payload": data},
        )
        event = StripeEvent.objects.select_for_update().get(pk=event.pk)
        if not created:
            StripeEvent.objects.filter(pk=event.pk).update(deliveries=event.deliveries + 1)
            if event.status != StripeEvent.Status.FAILED:
                return event  # applied (or ignored) before: a redelivery changes nothing
        try:
            with transaction.atomic():
                event.payment = _handle(event.type, data["data"].get("object") or {}, event_id=event.event_id)
            event.status, event.error = StripeEvent.Status.PROCESSED, ""
        except _Ignored as exc:
            event.status, event.error = StripeEvent.Status.IGNORED, str(exc)
        except Exception as exc:
            log.exception("stripe event %s (%s) failed", event.event_id, event.type)
            event.status, event.error = StripeEvent.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "payment", "processed_at"])
    if event.status == StripeEvent.Status.PROCESSED and event.type in _CREDITING and event.payment and not event.payment.receipt_url:
        transaction.on_commit(lambda: payment_receipt_fetch(payment_id=event.payment.pk))
    return event


def _payment_for_session(obj: dict) -> Payment:
    payment = Payment.objects.select_for_update().filter(session_id=str(obj.get("id", ""))).first()
    if payment is None:
        raise _Ignored(f"no payment for session {str(obj.get('id', ''))[:100]!r}")
    return payment


def _payment_for_intent(intent_id) -> Payment:
    """The payment behind a charge or dispute event. An intent we have not seen yet (its
    session's event has not arrived) is looked up at Stripe by our reference on it."""
    intent_id = str(intent_id or "")
    payment = Payment.objects.select_for_update().filter(payment_intent_id=intent_id).exclude(payment_intent_id="").first()
    if payment is None and intent_id:
        reference = stripe_gateway.payment_intent_reference(intent_id=intent_id)
        payment = Payment.objects.select_for_update().filter(reference=reference).first() if reference else None
        if payment is not None and not payment.payment_intent_id:
            payment.payment_intent_id = intent_id[:255]
            payment.save(update_fields=["payment_intent_id"])
    if payment is None:
        raise _Ignored(f"no payment for payment intent {intent_id[:100]!r}")
    return payment


def _handle(event_type: str, obj: dict, *, event_id: str) -> Payment | None:
    if event_type == "checkout.session.completed":
        payment = _payment_for_session(obj)
        _remember_intent(payment, obj)
        if obj.get("payment_status") == "paid":
            _credit(payment, obj)
        return payment  # unpaid: a wallet payment still in flight; its async event decides
    if event_type == "checkout.session.async_payment_succeeded":
        payment = _payment_for_session(obj)
        _remember_intent(payment, obj)
        _credit(payment, obj)
        return payment
    if event_type == "checkout.session.async_payment_failed":
        payment = _payment_for_session(obj)
        if payment.status == Payment.Status.PENDING:
            payment.status = Payment.Status.FAILED
            payment.save(update_fields=["status"])
        return payment
    if event_type in ("charge.succeeded", "charge.updated"):
        payment = _payment_for_intent(obj.get("payment_intent"))
        if obj.get("receipt_url") and not payment.receipt_url:
            payment.receipt_url = str(obj["receipt_url"])[:2000]
            payment.save(update_fields=["receipt_url"])
        return payment
    if event_type == "charge.refunded":
        return _refund(obj, event_id=event_id)
    if event_type == "charge.dispute.created":
        return _dispute_opened(obj)
    if event_type == "charge.dispute.closed":
        return _dispute_closed(obj)
    raise _Ignored(f"event type {event_type!r} is not handled")


_CREDITING = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


def _remember_intent(payment: Payment, obj: dict) -> None:
    intent = obj.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    if intent_id and not payment.payment_intent_id:
        payment.payment_intent_id = str(intent_id)[:255]
        payment.save(update_fields=["payment_intent_id"])


def _minor_to_micros(value, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {value!r} is not a non-negative integer")
    return value * MICROS_PER_MINOR


def _credit(payment: Payment, session: dict) -> None:
    if payment.status != Payment.Status.PENDING:
        return  # credited before, or failed: never twice
    paid_micros = _minor_to_micros(session.get("amount_total"), what="amount_total")
    if paid_micros != payment.amount_micros or str(session.get("currency", "")).upper() != payment.currency:
        raise ValueError(
            f"session says {paid_micros} micros {session.get('currency')!r}, the payment was for "
            f"{payment.amount_micros} micros {payment.currency}: not credited"
        )
    balance_credit(
        tenant_id=payment.tenant_id,
        kind=payment.balance_kind,
        amount_micros=payment.amount_micros,
        idempotency_key=f"stripe:paid:{payment.session_id}",
        entry_kind=LedgerEntry.Kind.TOPUP,
        note=f"Stripe top-up ({payment.method}) {payment.session_id}",
    )
    payment.status = Payment.Status.PAID
    payment.paid_at = timezone.now()
    payment.save(update_fields=["status", "paid_at"])


def _take_back(payment: Payment, amount_micros: int, *, idempotency_key: str, note: str) -> int:
    """Debit up to `amount_micros` from the payment's balance, as far as its available money
    goes; the rest becomes outstanding. Returns what was debited."""
    balance = Balance.objects.select_for_update().get(tenant_id=payment.tenant_id, kind=payment.balance_kind)
    taken = max(0, min(amount_micros, balance.amount_micros - balance.held_micros))
    if taken:
        balance_credit(
            tenant_id=payment.tenant_id, kind=payment.balance_kind, amount_micros=-taken,
            idempotency_key=idempotency_key, entry_kind=LedgerEntry.Kind.REFUND, note=note,
        )
    shortfall = amount_micros - taken
    if shortfall:
        log.warning(
            "payment %s: %s %s taken back by Stripe was already spent; recorded as outstanding",
            payment.session_id, format_micros(shortfall), payment.currency,
        )
    payment.debited_micros += taken
    payment.outstanding_micros += shortfall
    return taken


def _credited(payment: Payment) -> None:
    if payment.status not in (Payment.Status.PAID, Payment.Status.REFUNDED, Payment.Status.DISPUTED):
        # not credited yet (its paid event has not arrived): fail, so Stripe redelivers later
        raise ValueError(f"payment {payment.session_id} is {payment.status}, not credited yet")


def _refund(charge: dict, *, event_id: str) -> Payment:
    payment = _payment_for_intent(charge.get("payment_intent"))
    _credited(payment)
    refunded_micros = min(_minor_to_micros(charge.get("amount_refunded"), what="amount_refunded"), payment.amount_micros)
    delta = refunded_micros - payment.refunded_micros  # charge.amount_refunded is cumulative
    if delta <= 0:
        return payment  # an older refund event arriving late
    _take_back(payment, delta, idempotency_key=f"stripe:{event_id}", note=f"Stripe refund of {payment.session_id}")
    payment.refunded_micros = refunded_micros
    if refunded_micros == payment.amount_micros:
        payment.status = Payment.Status.REFUNDED
    payment.save(update_fields=["refunded_micros", "debited_micros", "outstanding_micros", "status"])
    return payment


def _dispute_opened(dispute: dict) -> Payment:
    payment = _payment_for_intent(dispute.get("payment_intent"))
    _credited(payment)
    if payment.disputed_micros:
        return payment  # Stripe allows one dispute per charge: this one is applied already
    amount_micros = min(_minor_to_micros(dispute.get("amount"), what="dispute amount"), payment.amount_micros - payment.refunded_micros)
    if amount_micros <= 0:
        return payment
    _take_back(payment, amount_micros, idempotency_key=f"stripe:dispute:{dispute.get('id')}", note=f"Stripe dispute on {payment.session_id}")
    payment.disputed_micros = amount_micros
    payment.status = Payment.Status.DISPUTED
    payment.save(update_fields=["disputed_micros", "debited_micros", "outstanding_micros", "status"])
    return payment


def _dispute_closed(dispute: dict) -> Payment:
    payment = _payment_for_intent(dispute.get("payment_intent"))
    if dispute.get("status") != "won" or not payment.disputed_micros:
        return payment  # lost: the money stays taken back
    taken_entry = LedgerEntry.objects.filter(idempotency_key=f"stripe:dispute:{dispute.get('id')}").first()
    taken = -taken_entry.amount_micros if taken_entry else 0
    if taken:
        balance_credit(
            tenant_id=payment.tenant_id, kind=payment.balance_kind, amount_micros=taken,
            idempotency_key=f"stripe:dispute:{dispute.get('id')}:won", entry_kind=LedgerEntry.Kind.REFUND,
            note=f"Stripe dispute won on {payment.session_id}",
        )
    payment.debited_micros -= taken
    payment.outstanding_micros -= payment.disputed_micros - taken
    payment.disputed_micros = 0
    payment.status = Payment.Status.REFUNDED if payment.refunded_micros == payment.amount_micros else Payment.Status.PAID
    payment.save(update_fields=["disputed_micros", "debited_micros", "outstanding_micros", "status"])
    return payment


def payment_receipt_fetch(*, payment_id: int) -> str:
    """Ask Stripe for a paid payment's receipt link and keep it; '' when Stripe has none (yet).
    Best effort: a failure leaves the link empty (a later `charge.*` event can fill it)."""
    payment = Payment.objects.get(pk=payment_id)
    try:
        url = stripe_gateway.checkout_session_receipt_url(session_id=payment.session_id)
    except stripe_gateway.GatewayError as exc:
        log.info("receipt of %s not fetched: %s", payment.session_id, exc)
        return ""
    if url:
        Payment.objects.filter(pk=payment_id, receipt_url="").update(receipt_url=url[:2000])
    return url
