"""Top-up at /topup/ and `create_topup`: a Checkout Session through the real stripe SDK (at the
fake Stripe), a pending payment, and nothing credited before the verified webhook."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from urllib.parse import parse_qs

from billing.models import Payment
from billing.selectors import balances_get
from tests.billing.conftest import Portal, make_user
from tests.conftest import make_tenant, subprocess_database_url


def _created_sessions(fake) -> list:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]


def test_a_customer_starts_a_card_top_up_and_is_sent_to_checkout(payer, stripe_fake):
    portal, tenant, _ = payer
    response = portal.post("/topup/", {"balance": "credit", "amount": "25", "method": "card"})
    assert response.status_code == 302
    payment = Payment.objects.get(tenant=tenant)
    assert response.headers["location"] == payment.checkout_url == f"{stripe_fake.url}/pay/{payment.session_id}"
    assert (payment.status, payment.amount_micros, payment.currency, payment.method) == ("pending", 25_000_000, "USD", "card")
    # what the SDK sent: form-encoded, amounts in cents, our key
    (sent,) = _created_sessions(stripe_fake)
    assert sent.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert sent.headers["authorization"] == "Bearer sk_test_tokenhub_fake"
    form = parse_qs(sent.body.decode())
    assert form["line_items[0][price_data][unit_amount]"] == ["2500"]
    assert form["line_items[0][price_data][currency]"] == ["usd"]
    assert form["payment_method_types[0]"] == ["card"]
    assert form["metadata[tenant_id]"] == [str(tenant.pk)]
    assert form["payment_intent_data[metadata][tokenhub_ref]"] == form["client_reference_id"] == [payment.reference]
    assert form["success_url"][0].endswith("/topup/success/?session_id={CHECKOUT_SESSION_ID}")
    # pending is visible at once; nothing is credited
    page = portal.get("/topup/")
    assert payment.session_id in page.text and ">pending<" in page.text
    assert balances_get(tenant_id=tenant.pk)["credit"].amount_micros == 0


def test_a_wallet_top_up_in_cny_can_use_wechat_pay(payer, stripe_fake):
    portal, tenant, _ = payer
    response = portal.post("/topup/", {"balance": "wallet", "amount": "100", "method": "wechat_pay"})
    assert response.status_code == 302
    form = parse_qs(_created_sessions(stripe_fake)[0].body.decode())
    assert form["line_items[0][price_data][currency]"] == ["cny"]
    assert form["payment_method_types[0]"] == ["wechat_pay"]
    assert form["payment_method_options[wechat_pay][client]"] == ["web"]
    assert Payment.objects.get(tenant=tenant).method == "wechat_pay"


def test_bad_top_ups_are_refused_and_change_nothing(payer, stripe_fake, settings):
    portal, tenant, _ = payer
    cases = [
        ({"balance": "credit", "amount": "4.99"}, "amount must be between 5 and 10000 USD"),
        ({"balance": "credit", "amount": "10000.01"}, "amount must be between 5 and 10000 USD"),
        ({"balance": "credit", "amount": "5.001"}, "more than 2 decimal places"),
        ({"balance": "credit", "amount": "ten"}, "is not a number"),
        ({"balance": "credit", "amount": "25", "method": "alipay"}, "method &#x27;alipay&#x27; is not enabled for USD (enabled: card)"),
        ({"balance": "gold", "amount": "25"}, "balance must be credit or wallet"),
        ({"balance": "credit", "amount": "9" * 30}, "amount is longer than 24 characters"),
        ({"balance": "credit", "amount": "1e1000000"}, "amount must be between -1000000000 and 1000000000"),
        ({"balance": "credit", "amount": "\u0662\u0665"}, "is not a number"),
    ]
    for data, message in cases:
        response = portal.post("/topup/", data)
        assert response.status_code == 400, data
        assert message in response.text, (data, response.text[:2000])
    assert not _created_sessions(stripe_fake)
    assert not Payment.objects.exists()


def test_without_a_stripe_key_the_page_offers_redemption_codes(payer, settings):
    settings.STRIPE_SECRET_KEY = ""
    portal, tenant, _ = payer
    page = portal.get("/topup/")
    assert page.status_code == 200
    assert "Top-up is not configured" in page.text and 'href="/redeem/"' in page.text
    response = portal.post("/topup/", {"balance": "credit", "amount": "25"}, form_page="/redeem/")
    assert response.status_code == 400 and "top-up is not configured" in response.text
    assert not Payment.objects.exists()


def test_a_stripe_refusal_is_shown_without_the_key(payer, stripe_fake, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_wrong_key_value"
    portal, _, _ = payer
    response = portal.post("/topup/", {"balance": "credit", "amount": "25"})
    assert response.status_code == 400 and "Stripe refused the checkout session" in response.text
    assert "sk_test_wrong_key_value" not in response.text
    assert not Payment.objects.exists()


def test_only_owners_top_up_and_nobody_sees_another_tenants_payment(payer, stripe_fake, relay, bob):
    portal, tenant, _ = payer
    portal.post("/topup/", {"balance": "credit", "amount": "25"})
    payment = Payment.objects.get(tenant=tenant)
    other_owner = Portal(relay.url, bob.user)
    seen = other_owner.get(f"/topup/success/?session_id={payment.session_id}")
    assert seen.status_code == 200 and payment.session_id not in seen.text and "No such payment" in seen.text
    assert payment.session_id not in other_owner.get("/topup/").text
    member = Portal(relay.url, make_user("payer-member", tenant, role="member"))
    assert member.get("/topup/").status_code == 403
    assert member.get("/redeem/").status_code == 403
    anonymous = relay_get(relay, "/topup/")
    assert anonymous.status_code == 302 and "/login/" in anonymous.headers["location"]


def relay_get(relay, path: str):
    import httpx

    return httpx.get(relay.url + path, follow_redirects=False)


def _command(*args: str) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": subprocess_database_url(),
        "TOKENHUB_VAR_DIR": str(settings.VAR_DIR),
        "STRIPE_SECRET_KEY": settings.STRIPE_SECRET_KEY,
        "STRIPE_API_BASE": settings.STRIPE_API_BASE,
        "TOPUP_METHODS": json.dumps(settings.TOPUP_METHODS),
        "PUBLIC_BASE_URL": "https://hub.example.com",
    }
    return subprocess.run([sys.executable, "manage.py", *args], capture_output=True, text=True, env=env, timeout=60)


def test_create_topup_prints_the_checkout_link_and_credits_nothing(relay, stripe_fake):
    tenant = make_tenant("invoiced", credit=None, wallet=None)
    done = _command("create_topup", "invoiced", "--balance", "wallet", "--amount", "200", "--method", "alipay", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    payment = Payment.objects.get(pk=out["id"])
    assert out["session_id"] == payment.session_id and out["url"] == f"{stripe_fake.url}/pay/{payment.session_id}"
    assert (payment.currency, payment.amount_micros, payment.method, payment.status) == ("CNY", 200_000_000, "alipay", "pending")
    form = parse_qs(_created_sessions(stripe_fake)[0].body.decode())
    assert form["success_url"] == ["https://hub.example.com/topup/success/?session_id={CHECKOUT_SESSION_ID}"]
    assert balances_get(tenant_id=tenant.pk)["wallet"].amount_micros == 0


def test_create_topup_refuses_bad_arguments_in_one_line(relay, stripe_fake):
    make_tenant("invoiced", credit=None, wallet=None)
    for args, message in [
        (("nobody", "--balance", "credit", "--amount", "10"), "no tenant named or numbered 'nobody'"),
        (("invoiced", "--balance", "credit", "--amount", "1"), "amount must be between 5 and 10000 USD"),
        (("invoiced", "--balance", "credit", "--amount", "10", "--method", "alipay"), "not enabled for USD"),
    ]:
        done = _command("create_topup", *args, "--json")
        assert done.returncode != 0 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not Payment.objects.exists() and not _created_sessions(stripe_fake)


def test_create_topup_writes_nothing_to_stderr_when_it_succeeds(relay, stripe_fake):
    make_tenant("invoiced", credit=None, wallet=None)
    done = _command("create_topup", "invoiced", "--balance", "credit", "--amount", "10", "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert json.loads(done.stdout)["session_id"]


def test_create_topup_with_stripe_unreachable_prints_one_line_on_stderr(relay, stripe_fake, settings):
    make_tenant("invoiced", credit=None, wallet=None)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard: nothing listens
    done = _command("create_topup", "invoiced", "--balance", "credit", "--amount", "10", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "CommandError: The payment provider could not be reached; please try again in a few minutes.\n"
    assert not Payment.objects.exists()


def test_an_unreachable_stripe_is_a_plain_message_and_the_details_are_logged(payer, stripe_fake, settings, caplog):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard: nothing listens
    portal, _, _ = payer
    with caplog.at_level("WARNING", logger="billing.stripe_gateway"):
        response = portal.post("/topup/", {"balance": "credit", "amount": "25"})
    assert response.status_code == 400
    shown = re.findall(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
    assert shown == ["The payment provider could not be reached; please try again in a few minutes."]
    assert "127.0.0.1:9" not in response.text and "Connection" not in response.text
    assert any("127.0.0.1" in record.getMessage() for record in caplog.records)
    assert not Payment.objects.exists()
