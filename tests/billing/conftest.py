"""Payments' cast: the fake Stripe on loopback with the real SDK pointed at it, signed webhook
deliveries, and portal sessions over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import httpx
import pytest

from tests.conftest import make_tenant
from tests.fakes.server import ServerThread
from tests.fakes.stripe_server import FakeStripe

STRIPE_KEY = "sk_test_tokenhub_fake"
WEBHOOK_SECRET = "whsec_test_tokenhub"


@pytest.fixture(autouse=True)
def _no_attempts_counted():
    """Attempt counters (in the in-process cache on the embedded pass) start at zero."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def stripe_server():
    fake = FakeStripe(api_key=STRIPE_KEY)
    server = ServerThread(fake).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture
def stripe_fake(stripe_server, settings):
    """Stripe configured: card for USD, Alipay and WeChat Pay for CNY."""
    settings.STRIPE_SECRET_KEY = STRIPE_KEY
    settings.STRIPE_API_BASE = stripe_server.url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.TOPUP_METHODS = {"USD": ["card"], "CNY": ["alipay", "wechat_pay"]}
    settings.TOPUP_BOUNDS = {"USD": ["5", "10000"], "CNY": ["20", "70000"]}
    stripe_server.requests.clear()
    return stripe_server


def stripe_signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={signed}"


def deliver(relay, event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> httpx.Response:
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": stripe_signature(body, secret=secret, timestamp=timestamp), "Content-Type": "application/json"}
    return httpx.post(relay.url + "/billing/stripe/webhook/", content=body, headers=headers, timeout=30)


def make_user(username: str, tenant, *, role: str = "owner", email: str | None = None):
    from django.contrib.auth import get_user_model

    from accounts.services import membership_add

    user = get_user_model().objects.create_user(username=username, email=email or f"{username}@example.com", password="x-unused-pw-123")
    membership_add(user=user, tenant=tenant, role=role)
    return user


class Portal:
    """A signed-in browser, over real HTTP: session cookie, CSRF token taken from the form."""

    def __init__(self, base_url: str, user, *, local_address: str | None = None) -> None:
        from django.test import Client

        client = Client()
        client.force_login(user)
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self.http = httpx.Client(base_url=base_url, transport=transport, timeout=30, follow_redirects=False)
        self.http.cookies.set("sessionid", client.cookies["sessionid"].value)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict, *, form_page: str | None = None) -> httpx.Response:
        page = self.http.get(form_page or path)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, f"no form on {form_page or path}: {page.status_code}"
        return self.http.post(path, data={**data, "csrfmiddlewaretoken": match.group(1)}, headers={"Referer": str(self.http.base_url)})


@pytest.fixture
def payer(relay):
    """A tenant with empty balances and its owner, signed in."""
    tenant = make_tenant("payer", credit=None, wallet=None)
    user = make_user("payer-owner", tenant)
    return Portal(relay.url, user), tenant, user


def audit_is_clean() -> bool:
    from billing.services import ledger_audit

    return ledger_audit() == []
