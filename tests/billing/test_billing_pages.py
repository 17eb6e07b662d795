"""Every billing page that moves or shows money (walked from billing's URL configuration: the
views that ask for the "billing" permission) needs a signed-in owner; the admin shows payments
and Stripe events read-only."""

from __future__ import annotations

import httpx

from billing.models import Payment
from billing.payments import topup_create
from billing.urls import urlpatterns
from tests.billing.conftest import Portal, make_user
from tests.conftest import make_tenant

PORTAL_PATHS = ["/" + str(p.pattern) for p in urlpatterns
                if p.name != "stripe_webhook" and getattr(p.callback, "portal_permission", None) == "billing"]


def test_every_billing_page_needs_a_signed_in_owner(relay):
    assert {"/topup/", "/redeem/", "/ledger/"} <= set(PORTAL_PATHS) and "/pricing/" not in PORTAL_PATHS
    tenant = make_tenant("team", credit=None, wallet=None)
    member = Portal(relay.url, make_user("team-member", tenant, role="member"))
    for path in PORTAL_PATHS:
        anonymous = httpx.get(relay.url + path, follow_redirects=False)
        assert anonymous.status_code == 302 and anonymous.headers["location"].startswith("/login/"), path
        assert member.get(path).status_code == 403, path


def test_the_webhook_takes_posts_without_a_csrf_token_only(relay):
    assert httpx.get(relay.url + "/billing/stripe/webhook/").status_code == 405
    # no CSRF token, no session: refused for its signature (400), not by CSRF (403)
    assert httpx.post(relay.url + "/billing/stripe/webhook/", content=b"{}").status_code == 400


def test_operators_see_payments_read_only_in_the_admin(client, relay, stripe_fake):
    from django.contrib.auth import get_user_model

    tenant = make_tenant("customer", credit=None, wallet=None)
    payment = topup_create(tenant_id=tenant.pk, kind="credit", amount="30", method=None, success_url="https://x.example/s", cancel_url="https://x.example/c")
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-op-12345"))
    listing = client.get("/admin/billing/payment/")
    assert listing.status_code == 200 and "customer" in listing.content.decode() and "pending" in listing.content.decode()
    assert client.get("/admin/billing/payment/add/").status_code == 403
    changed = client.post(f"/admin/billing/payment/{payment.pk}/change/", {"status": "paid", "amount_micros": "1"})
    assert changed.status_code == 403
    assert Payment.objects.get(pk=payment.pk).status == "pending"
    assert client.get("/admin/billing/stripeevent/").status_code == 200
