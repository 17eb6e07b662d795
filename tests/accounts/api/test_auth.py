"""Who gets in: operator tokens (scopes, revocation), sessions (CSRF), and never a /v1 key."""

from __future__ import annotations

import httpx
from django.core.management import call_command

from accounts.models import OperatorToken, Tenant

from .conftest import assert_error, operator_token, token_client


def test_no_credentials_is_401(relay_server, transactional_db):
    response = httpx.get(relay_server.url + "/api/v1/tenants")
    assert_error(response, 401, "unauthenticated")


def test_a_v1_customer_key_is_refused(relay_server, alice):
    with token_client(relay_server.url, alice.key) as client:
        assert_error(client.get("/tenants"), 401, "unauthenticated")
        assert_error(client.get(f"/tenants/{alice.tenant.pk}/keys"), 401, "unauthenticated")


def test_operator_token_is_stored_hashed_and_works(operator, alice):
    token = OperatorToken.objects.get(pk=operator.token_id)
    secret = operator.headers["Authorization"].split()[1]
    assert secret not in (token.token_hash, token.prefix) and len(token.token_hash) == 64
    names = [t["name"] for t in operator.get("/tenants").json()]
    assert {"alice", "bob"} <= set(names)
    assert OperatorToken.objects.get(pk=operator.token_id).last_used_at is not None


def test_read_only_token_reads_but_cannot_write(reader, alice):
    assert reader.get("/tenants").status_code == 200
    assert reader.get(f"/tenants/{alice.tenant.pk}/balances").status_code == 200
    before = Tenant.objects.count()
    assert_error(reader.post("/tenants", json={"name": "mallory"}), 403, "forbidden")
    assert_error(reader.post(f"/tenants/{alice.tenant.pk}/keys/{alice.key_id}/revoke"), 403, "forbidden")
    assert_error(reader.patch(f"/tenants/{alice.tenant.pk}", json={"status": "suspended"}), 403, "forbidden")
    assert Tenant.objects.count() == before
    assert Tenant.objects.get(pk=alice.tenant.pk).status == "active"


def test_revoked_token_is_refused_at_once(relay_server, transactional_db):
    made = operator_token("temp")
    with token_client(relay_server.url, made["token"]) as client:
        assert client.get("/tenants").status_code == 200
        call_command("revoke_operator_token", str(made["id"]), "--json")
        assert_error(client.get("/tenants"), 401, "unauthenticated")


def test_session_write_needs_csrf(relay_server, alice):
    url = f"/tenants/{alice.tenant.pk}/keys"
    bare = httpx.Client(base_url=alice.http.base_url, cookies={"sessionid": alice.http.cookies["sessionid"]})
    with bare:
        assert bare.get(url).status_code == 200  # reads need no CSRF token
        assert_error(bare.post(url, json={"name": "csrf?"}), 403, "forbidden")
    assert alice.tenant.api_keys.filter(name="csrf?").count() == 0
    assert alice.http.post(url, json={"name": "with csrf"}).status_code == 201


def test_session_member_cannot_reach_operator_routes(alice):
    assert_error(alice.http.get("/channels"), 403, "forbidden")
    assert_error(alice.http.post("/tenants", json={"name": "x"}), 403, "forbidden")
    assert_error(alice.http.post(f"/tenants/{alice.tenant.pk}/ledger",
                                 json={"balance": "credit", "amount_micros": 10**9, "idempotency_key": "free money"}), 403, "forbidden")


def test_token_needs_no_csrf(operator, alice):
    response = operator.post(f"/tenants/{alice.tenant.pk}/keys", json={"name": "ops key"})
    assert response.status_code == 201, response.text


def test_read_only_token_is_refused_on_every_write_route(reader, operator, alice, charlie):
    """Built from the schema: every non-GET operation, with a valid body, is a 403 and changes nothing."""
    from tests.accounts.api.test_isolation import SCHEMA, _body, _fill, _snapshot
    from tests.conftest import make_channel

    channel = make_channel("ro", "sim://", provider_type="simulated")
    ids = {"tenant_id": alice.tenant.pk, "key_id": alice.key_id, "member_id": charlie.member_id, "channel_id": channel.pk, "name": "default"}
    before = (_snapshot(alice.tenant.pk), Tenant.objects.count(), list(type(channel).objects.values_list("id", "status", "weight")))
    writes = [(m.upper(), p, op) for p, ops in SCHEMA["paths"].items() for m, op in ops.items() if m != "get"]
    assert len(writes) >= 15
    for method, path, operation in writes:
        assert_error(reader.request(method, _fill(path, ids), json=_body(operation)), 403, "forbidden")
    assert before == (_snapshot(alice.tenant.pk), Tenant.objects.count(), list(type(channel).objects.values_list("id", "status", "weight")))


def test_a_write_without_valid_credentials_is_401(relay_server, alice):
    """Not a CSRF failure: a write with no session and no (or an unknown) token is unauthenticated."""
    url = relay_server.url + f"/api/v1/tenants/{alice.tenant.pk}/keys"
    keys = alice.tenant.api_keys.count()
    for headers in ({}, {"Authorization": "Bearer tho-bogus"}, {"Authorization": f"Bearer {alice.key}"}):
        assert_error(httpx.post(url, json={"name": "no one"}, headers=headers), 401, "unauthenticated")
        assert_error(httpx.post(relay_server.url + "/api/v1/tenants", json={"name": "no one"}, headers=headers), 401, "unauthenticated")
    assert alice.tenant.api_keys.count() == keys
    assert not Tenant.objects.filter(name="no one").exists()


def test_a_token_in_the_query_string_is_not_logged(relay_server, transactional_db):
    """django.request logs the refused request (its repr has the query string): the secret stays out."""
    import io
    import logging

    secret = operator_token("leaky")["token"]
    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    written = io.StringIO()
    earlier = console.setStream(written)
    try:
        response = httpx.get(relay_server.url + "/api/v1/tenants", params={"token": secret, "limit": "5"})
    finally:
        console.setStream(earlier)
    assert_error(response, 401, "unauthenticated")
    lines = written.getvalue()
    assert "Unauthorized: /api/v1/tenants" in lines  # the line is written...
    assert secret not in lines and secret[len("tho-"):][:12] not in lines  # ...without the token
    assert "limit=5" in lines  # other query values stay readable
