"""The edge to Stripe: the SDK client, Checkout Session calls and webhook verification.

Nothing here touches the database; `billing.payments` decides what Stripe's answers mean.
Amounts cross this edge in Stripe's minor units (cents, fen): USD and CNY both have two
decimals, so one minor unit is 10,000 micros.
"""

from __future__ import annotations

import json
import logging

import stripe
from django.conf import settings

log = logging.getLogger(__name__)

MICROS_PER_MINOR = 10_000  # USD and CNY: 2 decimal places
CURRENCIES = ("USD", "CNY")


class GatewayError(Exception):
    """Stripe could not be reached or refused the call; the message is safe to show (the
    details are logged where it is raised)."""


UNREACHABLE = "The payment provider could not be reached; please try again in a few minutes."


class SignatureInvalid(Exception):
    """A webhook whose signature does not verify (forged, altered, or outside the tolerance)."""


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=1)


def _gateway_error(exc: stripe.StripeError, *, failed: str) -> GatewayError:
    """The error to raise for a failed call, its details logged. The SDK's own text (no answer,
    a 5xx, a 429) names our hosts and transport: a plain sentence instead. Stripe's answer about
    the request (a card declined, an amount refused) is meant for people: kept. A refused key's
    text quotes the key: its class name only."""
    log.warning("%s: %s: %s", failed, type(exc).__name__, exc)
    status = exc.http_status or 0
    if not status or status >= 500 or isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return GatewayError(UNREACHABLE)
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        return GatewayError(f"{failed}: {type(exc).__name__}")
    return GatewayError(f"{failed}: {exc.user_message or type(exc).__name__}")


def checkout_session_create(
    *,
    amount_minor: int,
    currency: str,
    method: str,
    product_name: str,
    success_url: str,
    cancel_url: str,
    client_reference_id: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> dict:
    params: dict = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": currency.lower(), "unit_amount": amount_minor, "product_data": {"name": product_name}},
                "quantity": 1,
            }
        ],
        "payment_method_types": [method],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": {"tokenhub_ref": client_reference_id}},
    }
    if method == "wechat_pay":
        params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
    try:
        session = client().v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _gateway_error(exc, failed="Stripe refused the checkout session") from None
    return session.to_dict()


def checkout_session_receipt_url(*, session_id: str) -> str:
    """Stripe's receipt link of a paid session's charge ('' when there is none yet)."""
    try:
        session = client().v1.checkout.sessions.retrieve(session_id, params={"expand": ["payment_intent.latest_charge"]})
    except stripe.StripeError as exc:
        raise _gateway_error(exc, failed="Stripe could not return the session") from None
    intent = session.to_dict().get("payment_intent")
    charge = intent.get("latest_charge") if isinstance(intent, dict) else None
    return str(charge.get("receipt_url") or "") if isinstance(charge, dict) else ""


def payment_intent_reference(*, intent_id: str) -> str:
    """Our reference (`tokenhub_ref`) on a payment intent; '' when it has none (not ours)."""
    try:
        intent = client().v1.payment_intents.retrieve(intent_id)
    except stripe.InvalidRequestError:
        return ""  # no such intent in this account
    except stripe.StripeError as exc:
        raise _gateway_error(exc, failed="Stripe could not return the payment intent") from None
    return str((intent.to_dict().get("metadata") or {}).get("tokenhub_ref") or "")


def event_verify(*, payload: bytes, signature: str) -> dict:
    """The event as a plain dict, once its signature verified on the raw body with the SDK's
    scheme and tolerance; SignatureInvalid otherwise."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        raise SignatureInvalid("STRIPE_WEBHOOK_SECRET is not set")
    try:
        stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_S)
    except stripe.SignatureVerificationError:
        raise SignatureInvalid("signature does not verify") from None
    except ValueError:
        raise SignatureInvalid("payload is not JSON") from None
    event = json.loads(payload)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("data"), dict):
        raise SignatureInvalid("payload is not a Stripe event")
    return event
