"""In a real browser (Playwright on Debian's Chromium): a customer starts a top-up, is sent to
Stripe's checkout (the fake's page), the verified webhook arrives, and the page they return to
shows the new balance and the receipt."""

from __future__ import annotations

import os

import pytest

from billing.models import Payment
from tests.billing.conftest import deliver, make_user
from tests.conftest import make_tenant

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install chromium (.ci/run does)"
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # plain synchronous ones all the same (Django would refuse them otherwise)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_a_customer_tops_up_and_sees_the_balance_and_the_receipt(relay, stripe_fake, browser):
    from django.test import Client

    tenant = make_tenant("shopper", credit=None, wallet=None)
    client = Client()
    client.force_login(make_user("shopper-owner", tenant))
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": relay.url}])
    page = context.new_page()

    page.goto(relay.url + "/topup/")
    assert page.locator("#balance-credit .amount").inner_text() == "0"
    page.locator("#topup-credit input[name=amount]").fill("25")
    page.locator("#topup-credit button[type=submit]").click()
    page.wait_for_url(stripe_fake.url + "/pay/*")
    assert page.title() == "Fake Stripe Checkout"
    session_id = page.locator("#session").inner_text()
    payment = Payment.objects.get(session_id=session_id)
    assert payment.tenant_id == tenant.pk and payment.status == "pending"

    # the customer pays at Stripe; Stripe delivers the signed event
    assert deliver(relay, stripe_fake.event("checkout.session.completed", stripe_fake.pay(session_id))).status_code == 200
    page.locator("#back").click()
    page.wait_for_url(relay.url + "/topup/success/*")
    assert page.locator("#payment-status").get_attribute("data-status") == "paid"
    assert page.locator("#balance-credit .amount").inner_text() == "25"
    row = page.locator(f"tr.payment[data-session='{session_id}']")
    assert row.locator(".status").inner_text().strip() == "paid"
    assert row.locator("a.receipt").get_attribute("href").startswith(stripe_fake.url + "/receipts/ch_")
    context.close()
