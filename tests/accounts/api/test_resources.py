"""The management API's resources over real HTTP: what each role may do, secrets shown once
or never, money moved only by idempotent ledger entries, bad input refused with nothing changed."""

from __future__ import annotations

import httpx

from accounts.models import ApiKey, Membership
from accounts.selectors import key_hash
from billing.models import Balance, LedgerEntry, Price
from channels.models import Channel

from .conftest import _log_request, assert_error


def test_key_secret_is_shown_once_and_stored_hashed(alice):
    made = alice.http.post(f"/tenants/{alice.tenant.pk}/keys", json={"name": "ci", "rpm": 60, "daily_cap_micros": 2_000_000})
    assert made.status_code == 201, made.text
    secret = made.json()["key"]
    stored = ApiKey.objects.get(pk=made.json()["id"])
    assert stored.key_hash == key_hash(secret) and stored.rpm == 60 and stored.created_by == alice.user
    listing = alice.http.get(f"/tenants/{alice.tenant.pk}/keys")
    shown = alice.http.get(f"/tenants/{alice.tenant.pk}/keys/{stored.pk}")
    assert secret not in listing.text and secret not in shown.text and "key" not in shown.json()


def test_negative_limits_are_refused(alice):
    before = ApiKey.objects.count()
    assert_error(alice.http.post(f"/tenants/{alice.tenant.pk}/keys", json={"rpm": -1}), 422, "validation_error")
    assert_error(alice.http.post(f"/tenants/{alice.tenant.pk}/keys", json={"allowed_ips": ["not-an-ip"]}), 400, "invalid_request")
    assert ApiKey.objects.count() == before


def test_revoked_key_stops_working_on_v1(relay_server, alice):
    v1 = httpx.Client(base_url=relay_server.url, headers={"Authorization": f"Bearer {alice.key}"})
    with v1:
        assert v1.get("/v1/models").status_code == 200
        revoked = alice.http.post(f"/tenants/{alice.tenant.pk}/keys/{alice.key_id}/revoke")
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        assert v1.get("/v1/models").status_code == 401


def test_member_sees_and_revokes_only_own_keys(alice, charlie):
    tenant = alice.tenant.pk
    ids = {k["id"] for k in charlie.http.get(f"/tenants/{tenant}/keys").json()}
    assert ids == {charlie.key_id}
    assert_error(charlie.http.get(f"/tenants/{tenant}/keys/{alice.key_id}"), 404, "not_found")
    assert_error(charlie.http.post(f"/tenants/{tenant}/keys/{alice.key_id}/revoke"), 404, "not_found")
    assert ApiKey.objects.get(pk=alice.key_id).status == "active"
    assert charlie.http.post(f"/tenants/{tenant}/keys/{charlie.key_id}/revoke").json()["status"] == "revoked"
    assert {k["id"] for k in alice.http.get(f"/tenants/{tenant}/keys").json()} == {alice.key_id, charlie.key_id}


def test_member_reads_usage_but_not_billing_or_members(alice, charlie):
    tenant = alice.tenant.pk
    assert charlie.http.get(f"/tenants/{tenant}/logs").status_code == 200
    assert_error(charlie.http.get(f"/tenants/{tenant}/balances"), 403, "forbidden")
    assert_error(charlie.http.get(f"/tenants/{tenant}/ledger"), 403, "forbidden")
    assert_error(charlie.http.get(f"/tenants/{tenant}/members"), 403, "forbidden")
    assert_error(charlie.http.post(f"/tenants/{tenant}/members", json={"user": "bob"}), 403, "forbidden")


def test_admin_manages_members_but_not_owners(operator, alice, bob, charlie):
    tenant = alice.tenant.pk
    promoted = alice.http.patch(f"/tenants/{tenant}/members/{charlie.member_id}", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    # people join by invitation (/team/): an admin session adds no one directly, owner or not
    for body in ({"user": "bob", "role": "owner"}, {"user": "bob@example.com"}):
        assert_error(charlie.http.post(f"/tenants/{tenant}/members", json=body), 403, "forbidden")
    assert not Membership.objects.filter(tenant_id=tenant, user=bob.user).exists()
    added = operator.post(f"/tenants/{tenant}/members", json={"user": "bob@example.com"})  # the site's operators still may
    assert added.status_code == 201 and added.json()["role"] == "member"
    alice_membership = Membership.objects.get(tenant_id=tenant, user=alice.user)
    assert_error(charlie.http.delete(f"/tenants/{tenant}/members/{alice_membership.pk}"), 403, "forbidden")
    # the last owner stays
    assert_error(alice.http.delete(f"/tenants/{tenant}/members/{alice_membership.pk}"), 400, "invalid_request")
    assert alice.http.delete(f"/tenants/{tenant}/members/{added.json()['id']}").status_code == 204
    assert not Membership.objects.filter(tenant_id=tenant, user=bob.user).exists()


def test_an_owner_cannot_add_another_tenants_user(alice, bob):
    url = f"/tenants/{alice.tenant.pk}/members"
    memberships = Membership.objects.count()
    answers = [alice.http.post(url, json=body) for body in (
        {"user": "bob@example.com", "role": "owner"}, {"user": "bob"}, {"user": "nobody@example.com"}, {"user": "nobody"},
    )]
    errors = [assert_error(answer, 403, "forbidden") for answer in answers]
    assert Membership.objects.count() == memberships
    assert not Membership.objects.filter(tenant=alice.tenant, user=bob.user).exists()
    # a known user and an unknown one get the same answer, and it names neither
    assert len({e["message"] for e in errors}) == 1
    assert not any(word in errors[0]["message"] for word in ("bob", "nobody", "@example.com"))
    assert "/team/" in errors[0]["message"]


def test_suspend_and_reactivate_a_tenant(relay_server, operator, alice):
    v1 = httpx.Client(base_url=relay_server.url, headers={"Authorization": f"Bearer {alice.key}"})
    with v1:
        assert operator.patch(f"/tenants/{alice.tenant.pk}", json={"status": "suspended"}).json()["status"] == "suspended"
        assert v1.get("/v1/models").status_code in (401, 403)
        assert operator.patch(f"/tenants/{alice.tenant.pk}", json={"status": "active"}).json()["status"] == "active"
        assert v1.get("/v1/models").status_code == 200
    assert_error(operator.patch(f"/tenants/{alice.tenant.pk}", json={"status": "frozen"}), 422, "validation_error")


def test_channel_credential_is_write_only(operator):
    secret = "sk-upstream-VERY-SECRET-123"
    made = operator.post("/channels", json={"name": "up", "provider_type": "simulated", "base_url": "sim://", "api_key": secret,
                                            "models": [{"model": "gpt-x", "upstream_name": "gpt-x-2"}], "priority": 5})
    assert made.status_code == 201, made.text
    channel_id = made.json()["id"]
    assert made.json()["has_credential"] is True and secret not in made.text
    stored = Channel.objects.get(pk=channel_id).credential
    assert stored and secret not in stored
    for response in (operator.get("/channels"), operator.get(f"/channels/{channel_id}")):
        assert secret not in response.text and '"credential"' not in response.text
    rotated = operator.patch(f"/channels/{channel_id}", json={"api_key": "sk-new-one", "weight": 3})
    assert rotated.status_code == 200 and rotated.json()["weight"] == 3 and "sk-new-one" not in rotated.text
    assert Channel.objects.get(pk=channel_id).credential != stored


def test_channel_enable_disable_and_bad_updates(operator):
    channel_id = operator.post("/channels", json={"name": "c1", "provider_type": "simulated", "base_url": "sim://",
                                                  "models": [{"model": "m1"}]}).json()["id"]
    disabled = operator.post(f"/channels/{channel_id}/disable", json={"reason": "maintenance"})
    assert disabled.json()["status"] == "disabled" and disabled.json()["status_reason"] == "maintenance"
    assert operator.post(f"/channels/{channel_id}/enable").json()["status"] == "enabled"
    assert_error(operator.patch(f"/channels/{channel_id}", json={"weight": 0}), 422, "validation_error")
    assert_error(operator.patch(f"/channels/{channel_id}", json={"groups": ["no spaces"]}), 400, "invalid_request")
    assert Channel.objects.get(pk=channel_id).weight == 1
    # a loopback upstream outside the allowed ranges is refused
    bad = operator.post("/channels", json={"name": "ssrf", "provider_type": "openai", "base_url": "http://169.254.169.254/v1",
                                           "models": [{"model": "m1"}]})
    assert_error(bad, 400, "invalid_request")
    assert not Channel.objects.filter(name="ssrf").exists()


def test_channel_with_history_is_not_deleted(operator, alice):
    with_history = operator.post("/channels", json={"name": "used", "provider_type": "simulated", "base_url": "sim://",
                                                    "models": [{"model": "m1"}]}).json()["id"]
    unused = operator.post("/channels", json={"name": "unused", "provider_type": "simulated", "base_url": "sim://",
                                              "models": [{"model": "m1"}]}).json()["id"]
    from django.utils import timezone

    from observability.services import request_log_submit, request_logs_flush

    request_log_submit(entry={"request_id": "hist-1", "tenant_id": alice.tenant.pk, "key_id": alice.key_id, "model": "m1",
                              "status": 200, "channel_id": with_history, "channel_name": "used", "endpoint": "chat.completions",
                              "latency_ms": 5, "overhead_ms": 1.0, "attempts": [], "prompt_tokens": 1, "completion_tokens": 1,
                              "cost_micros": 0, "currency": "USD", "created_at": timezone.now()})
    request_logs_flush()
    assert_error(operator.delete(f"/channels/{with_history}"), 409, "conflict")
    assert Channel.objects.get(pk=with_history).status == "enabled"
    instead = operator.delete(f"/channels/{with_history}", params={"disable_instead": "true"})
    assert instead.json() == {"deleted": False, "disabled": True}
    assert Channel.objects.get(pk=with_history).status == "disabled"
    assert operator.delete(f"/channels/{unused}").json() == {"deleted": True, "disabled": False}
    assert not Channel.objects.filter(pk=unused).exists()


def test_prices_are_non_negative(operator):
    assert operator.post("/prices", json={"model": "gpt-p", "input_usd_per_m": "2.5", "output_usd_per_m": "10"}).status_code == 200
    assert_error(operator.post("/prices", json={"model": "gpt-p", "input_usd_per_m": "-1", "output_usd_per_m": "1"}), 422, "validation_error")
    assert_error(operator.post("/prices", json={"model": "gpt-p", "input_usd_per_m": "1"}), 400, "invalid_request")
    price = Price.objects.get(model="gpt-p")
    assert (price.input_micros_per_m, price.output_micros_per_m) == (2_500_000, 10_000_000)
    assert [p["model"] for p in operator.get("/prices").json()] == ["gpt-p"]


def test_groups_and_models(operator):
    assert operator.put("/groups/vip", json={"ratio": "0.8"}).status_code == 200
    assert {g["name"]: g["ratio"] for g in operator.get("/groups").json()}["vip"] in ("0.8", "0.8000", 0.8)
    assert_error(operator.put("/groups/vip", json={"ratio": "-1"}), 422, "validation_error")
    made = operator.post("/models", json={"public_id": "gpt-cat", "context_window": 8000, "aliases": ["cat"]})
    assert made.status_code == 200 and made.json()["aliases"] == ["cat"]
    assert_error(operator.post("/models", json={"public_id": "other", "aliases": ["cat"]}), 400, "invalid_request")


def test_ledger_adjustments_are_idempotent(operator, alice):
    tenant = alice.tenant.pk
    url = f"/tenants/{tenant}/ledger"
    body = {"balance": "credit", "amount_micros": 1_500_000, "idempotency_key": "goodwill-42", "note": "sorry"}
    before = Balance.objects.get(tenant_id=tenant, kind="credit").amount_micros
    first, again = operator.post(url, json=body), operator.post(url, json=body)
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    assert Balance.objects.get(tenant_id=tenant, kind="credit").amount_micros == before + 1_500_000
    assert_error(operator.post(url, json={**body, "amount_micros": 9_000_000}), 409, "conflict")
    assert_error(operator.post(url, json={**body, "idempotency_key": "zero", "amount_micros": 0}), 400, "invalid_request")
    overdraw = operator.post(url, json={**body, "idempotency_key": "too-much", "amount_micros": -10**12})
    assert_error(overdraw, 400, "invalid_request")
    assert Balance.objects.get(tenant_id=tenant, kind="credit").amount_micros == before + 1_500_000
    page = operator.get(url, params={"limit": 1})
    assert len(page.json()["items"]) == 1 and page.json()["next_before_id"]
    rest = operator.get(url, params={"before_id": page.json()["next_before_id"]})
    ids = [e["id"] for e in page.json()["items"] + rest.json()["items"]]
    assert ids == sorted(set(LedgerEntry.objects.filter(balance__tenant_id=tenant).values_list("id", flat=True)), reverse=True)
    balances = alice.http.get(f"/tenants/{tenant}/balances").json()
    assert balances["credit"]["amount_micros"] == before + 1_500_000 and set(balances["wallet"]) == {"currency", "amount_micros", "held_micros"}


def test_request_logs_are_filtered_and_paginated(alice):
    for n in range(3):
        _log_request(alice.tenant, alice.key_id, f"more-{n}", model="gpt-other", status=500 if n == 0 else 200)
    url = f"/tenants/{alice.tenant.pk}/logs"
    assert {r["request_id"] for r in alice.http.get(url, params={"model": "gpt-other"}).json()["items"]} == {"more-0", "more-1", "more-2"}
    assert [r["request_id"] for r in alice.http.get(url, params={"status": 500}).json()["items"]] == ["more-0"]
    first = alice.http.get(url, params={"limit": 2}).json()
    second = alice.http.get(url, params={"limit": 2, "before_id": first["next_before_id"]}).json()
    seen = [r["request_id"] for r in first["items"] + second["items"]]
    assert seen == ["more-2", "more-1", "more-0", "req-alice"] and second["next_before_id"] is None
    assert_error(alice.http.get(url, params={"limit": 0}), 422, "validation_error")


def test_docs_page_loads_nothing_from_a_cdn(relay_server, transactional_db):
    page = httpx.get(relay_server.url + "/api/v1/docs")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.text and "//cdn" not in page.text and "https://" not in page.text.split("<body")[0]
    assert httpx.get(relay_server.url + "/api/v1/openapi.json").json()["info"]["title"] == "TokenHub management API"
