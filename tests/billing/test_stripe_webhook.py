"""/billing/stripe/webhook/: signed with Stripe's real scheme, verified with the SDK; each paid
session credited exactly once whatever the number, order or concurrency of deliveries; refunds
and disputes as ledger entries of their own, never a negative balance; the audit clean after each."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection

from billing.models import LedgerEntry, Payment, StripeEvent
from billing.payments import stripe_event_apply, topup_create
from billing.selectors import balances_get
from billing.services import balance_credit
from tests.billing.conftest import audit_is_clean, deliver, stripe_signature
from tests.conftest import make_tenant


@pytest.fixture
def tenant(relay, stripe_fake):
    return make_tenant("payer", credit=None, wallet=None)


def _topup(tenant, *, kind: str = "credit", amount: str = "50", method: str | None = None) -> Payment:
    return topup_create(
        tenant_id=tenant.pk, kind=kind, amount=amount, method=method,
        success_url="https://hub.example.com/topup/success/", cancel_url="https://hub.example.com/topup/cancel/",
    )


def _balance(tenant, kind: str = "credit") -> int:
    return balances_get(tenant_id=tenant.pk)[kind].amount_micros


def _topup_entries(tenant) -> int:
    return LedgerEntry.objects.filter(balance__tenant=tenant, kind=LedgerEntry.Kind.TOPUP).count()


def _paid(stripe_fake, payment, **kwargs) -> dict:
    return stripe_fake.event("checkout.session.completed", stripe_fake.pay(payment.session_id), **kwargs)


def _concurrently(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # the assertion below names it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_a_paid_session_is_credited_once_when_delivered_ten_times_concurrently(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    event = _paid(stripe_fake, payment)
    responses = _concurrently(10, lambda i: deliver(relay, event))
    assert [r.status_code for r in responses] == [200] * 10, responses
    assert _balance(tenant) == 50_000_000 and _topup_entries(tenant) == 1
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert (stored.status, stored.deliveries, stored.payment_id) == ("processed", 10, payment.pk)
    payment.refresh_from_db()
    assert payment.status == "paid" and payment.paid_at is not None
    assert payment.receipt_url.startswith(stripe_fake.url + "/receipts/ch_")  # fetched from Stripe after commit
    assert audit_is_clean()


def test_different_events_for_one_session_applied_at_the_same_moment_credit_once(tenant, stripe_fake):
    """Each thread its own connection: real concurrency on PostgreSQL (SQLite serializes)."""
    payment = _topup(tenant)
    session = stripe_fake.pay(payment.session_id)
    events = [
        stripe_fake.event("checkout.session.completed" if i % 2 else "checkout.session.async_payment_succeeded", session)
        for i in range(10)
    ]
    bodies = [json.dumps(e).encode() for e in events]
    results = _concurrently(10, lambda i: stripe_event_apply(payload=bodies[i], signature=stripe_signature(bodies[i])))
    assert all(isinstance(r, StripeEvent) and r.status == "processed" for r in results), results
    assert _balance(tenant) == 50_000_000 and _topup_entries(tenant) == 1
    assert audit_is_clean()


def test_forged_and_stale_events_are_refused_and_stored_nowhere(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    event = _paid(stripe_fake, payment)
    forged = deliver(relay, event, secret="whsec_attacker")
    assert forged.status_code == 400 and forged.json() == {"error": "invalid signature"}
    stale = deliver(relay, event, timestamp=int(time.time()) - 301)  # the SDK's tolerance is 300 s
    assert stale.status_code == 400
    body = json.dumps(event).encode()
    tampered = json.dumps({**event, "data": {"object": {**event["data"]["object"], "amount_total": 9_999_999}}}).encode()
    import httpx

    altered = httpx.post(relay.url + "/billing/stripe/webhook/", content=tampered, headers={"Stripe-Signature": stripe_signature(body)})
    assert altered.status_code == 400
    unsigned = httpx.post(relay.url + "/billing/stripe/webhook/", content=body)
    assert unsigned.status_code == 400
    assert httpx.get(relay.url + "/billing/stripe/webhook/").status_code == 405
    assert not StripeEvent.objects.exists()
    assert _balance(tenant) == 0 and Payment.objects.get(pk=payment.pk).status == "pending"
    assert audit_is_clean()


def test_an_unknown_session_credits_nothing_and_its_event_is_stored(tenant, stripe_fake, relay):
    session = {"id": "cs_test_not_ours", "object": "checkout.session", "payment_status": "paid", "amount_total": 5000, "currency": "usd"}
    event = stripe_fake.event("checkout.session.completed", session)
    response = deliver(relay, event)
    assert response.status_code == 200
    stored = StripeEvent.objects.get(event_id=event["id"])
    assert stored.status == "ignored" and "cs_test_not_ours" in stored.error
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.TOPUP).exists()
    assert audit_is_clean()


def test_unknown_event_types_get_200_and_are_stored_as_ignored(tenant, stripe_fake, relay):
    event = stripe_fake.event("customer.created", {"id": "cus_1", "object": "customer"})
    response = deliver(relay, event)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert StripeEvent.objects.get(event_id=event["id"]).type == "customer.created"


def test_an_async_wallet_payment_credits_on_success_only(tenant, stripe_fake, relay):
    succeeded = _topup(tenant, kind="wallet", amount="100", method="alipay")
    failed = _topup(tenant, kind="wallet", amount="200", method="wechat_pay")
    for payment in (succeeded, failed):
        pending = stripe_fake.event("checkout.session.completed", stripe_fake.pay(payment.session_id, async_pending=True))
        assert deliver(relay, pending).status_code == 200
    assert _balance(tenant, "wallet") == 0
    assert set(Payment.objects.values_list("status", flat=True)) == {"pending"}
    ok = stripe_fake.event("checkout.session.async_payment_succeeded", stripe_fake.settle(succeeded.session_id, is_paid=True))
    no = stripe_fake.event("checkout.session.async_payment_failed", stripe_fake.settle(failed.session_id, is_paid=False))
    assert deliver(relay, ok).status_code == 200 and deliver(relay, no).status_code == 200
    assert _balance(tenant, "wallet") == 100_000_000
    assert Payment.objects.get(pk=succeeded.pk).status == "paid" and Payment.objects.get(pk=failed.pk).status == "failed"
    # redelivered, and a late "completed" for the failed one: still nothing more
    assert deliver(relay, ok).status_code == 200
    late = stripe_fake.event("checkout.session.completed", stripe_fake.session_view(failed.session_id))
    assert deliver(relay, late).status_code == 200
    assert _balance(tenant, "wallet") == 100_000_000 and _topup_entries(tenant) == 1
    assert audit_is_clean()


def test_reordered_events_credit_once_and_a_failure_never_credits(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    session = stripe_fake.pay(payment.session_id)
    # the async success arrives before "completed": credited once, "completed" adds nothing
    assert deliver(relay, stripe_fake.event("checkout.session.async_payment_succeeded", session)).status_code == 200
    assert deliver(relay, stripe_fake.event("checkout.session.completed", session)).status_code == 200
    assert _balance(tenant) == 50_000_000 and _topup_entries(tenant) == 1
    # a failure arriving after the payment was credited changes nothing
    assert deliver(relay, stripe_fake.event("checkout.session.async_payment_failed", session)).status_code == 200
    assert Payment.objects.get(pk=payment.pk).status == "paid" and _balance(tenant) == 50_000_000
    assert audit_is_clean()


def test_a_session_whose_amount_differs_from_the_payment_is_not_credited(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    session = {**stripe_fake.pay(payment.session_id), "amount_total": 500_000}
    response = deliver(relay, stripe_fake.event("checkout.session.completed", session))
    assert response.status_code == 500  # kept as failed: Stripe retries, the operator sees why
    stored = StripeEvent.objects.get()
    assert stored.status == "failed" and "not credited" in stored.error
    assert _balance(tenant) == 0 and audit_is_clean()


def test_a_refund_after_the_money_was_spent_debits_what_is_left_and_records_the_rest(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    assert deliver(relay, _paid(stripe_fake, payment)).status_code == 200
    payment.refresh_from_db()
    balance_credit(tenant_id=tenant.pk, kind="credit", amount_micros=-35_000_000, idempotency_key="usage:spent", entry_kind="usage")
    refund = stripe_fake.event("charge.refunded", stripe_fake.charge(payment.session_id, amount_refunded=5000, refunded=True))
    assert deliver(relay, refund).status_code == 200
    assert _balance(tenant) == 0  # never negative
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_micros, payment.debited_micros, payment.outstanding_micros) == (
        "refunded", 50_000_000, 15_000_000, 35_000_000,
    )
    (entry,) = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND)
    assert entry.amount_micros == -15_000_000 and entry.idempotency_key == f"stripe:{refund['id']}"
    assert deliver(relay, refund).status_code == 200  # again: nothing more
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND).count() == 1
    assert audit_is_clean()


def test_partial_refunds_are_cumulative_and_an_old_one_arriving_late_takes_nothing(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    deliver(relay, _paid(stripe_fake, payment))
    first = stripe_fake.event("charge.refunded", stripe_fake.charge(payment.session_id, amount_refunded=1000))
    second = stripe_fake.event("charge.refunded", stripe_fake.charge(payment.session_id, amount_refunded=3000))
    assert deliver(relay, second).status_code == 200 and deliver(relay, first).status_code == 200
    assert _balance(tenant) == 20_000_000
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_micros, payment.outstanding_micros) == ("paid", 30_000_000, 0)
    assert audit_is_clean()


def test_a_refund_before_the_payment_was_credited_waits_for_it(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    paid = _paid(stripe_fake, payment)
    refund = stripe_fake.event("charge.refunded", stripe_fake.charge(payment.session_id, amount_refunded=5000, refunded=True))
    # found through our reference on the payment intent, but not credited yet: refused, so
    # Stripe delivers it again later; nothing debited
    assert deliver(relay, refund).status_code == 500
    assert StripeEvent.objects.get(event_id=refund["id"]).status == "failed"
    assert deliver(relay, paid).status_code == 200 and _balance(tenant) == 50_000_000
    assert deliver(relay, refund).status_code == 200  # Stripe's retry
    assert _balance(tenant) == 0 and Payment.objects.get(pk=payment.pk).status == "refunded"
    assert audit_is_clean()


def test_a_charge_event_for_a_payment_not_ours_is_ignored(tenant, stripe_fake, relay):
    charge = {"id": "ch_other", "object": "charge", "amount_refunded": 100, "payment_intent": "pi_not_ours_at_all"}
    response = deliver(relay, stripe_fake.event("charge.refunded", charge))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND).exists()


def test_a_dispute_takes_the_money_back_and_a_won_dispute_returns_it(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    deliver(relay, _paid(stripe_fake, payment))
    balance_credit(tenant_id=tenant.pk, kind="credit", amount_micros=-20_000_000, idempotency_key="usage:some", entry_kind="usage")
    payment.refresh_from_db()
    dispute = {"id": "dp_test_1", "object": "dispute", "amount": 5000, "currency": "usd", "payment_intent": payment.payment_intent_id, "status": "needs_response"}
    assert deliver(relay, stripe_fake.event("charge.dispute.created", dispute)).status_code == 200
    assert _balance(tenant) == 0
    payment.refresh_from_db()
    assert (payment.status, payment.disputed_micros, payment.debited_micros, payment.outstanding_micros) == ("disputed", 50_000_000, 30_000_000, 20_000_000)
    assert audit_is_clean()
    won = stripe_fake.event("charge.dispute.closed", {**dispute, "status": "won"})
    assert deliver(relay, won).status_code == 200 and deliver(relay, won).status_code == 200
    assert _balance(tenant) == 30_000_000
    payment.refresh_from_db()
    assert (payment.status, payment.disputed_micros, payment.debited_micros, payment.outstanding_micros) == ("paid", 0, 0, 0)
    assert audit_is_clean()


def test_a_lost_dispute_keeps_the_money_taken(tenant, stripe_fake, relay):
    payment = _topup(tenant)
    deliver(relay, _paid(stripe_fake, payment))
    payment.refresh_from_db()
    dispute = {"id": "dp_test_2", "object": "dispute", "amount": 5000, "currency": "usd", "payment_intent": payment.payment_intent_id, "status": "needs_response"}
    deliver(relay, stripe_fake.event("charge.dispute.created", dispute))
    deliver(relay, stripe_fake.event("charge.dispute.closed", {**dispute, "status": "lost"}))
    assert _balance(tenant) == 0 and Payment.objects.get(pk=payment.pk).status == "disputed"
    assert audit_is_clean()


def test_without_a_webhook_secret_every_delivery_is_refused(tenant, stripe_fake, relay, settings):
    payment = _topup(tenant)
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert deliver(relay, _paid(stripe_fake, payment)).status_code == 400
    assert _balance(tenant) == 0 and not StripeEvent.objects.exists()
