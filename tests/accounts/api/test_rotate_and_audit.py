"""Key rotation through the management API and the CLI (the same service as the portal's), and
the audit record every management-API write leaves."""

from __future__ import annotations

import json

import httpx
from django.core.management import call_command

from accounts.models import ApiKey
from observability.models import AuditRecord


def test_the_api_rotates_a_key_and_the_old_secret_works_inside_the_window(relay_server, alice):
    old = alice.key
    rotated = alice.http.post(f"/tenants/{alice.tenant.pk}/keys/{alice.key_id}/rotate", json={"overlap_s": 300})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["key"]
    assert new != old and ApiKey.objects.get(pk=alice.key_id).previous_expires_at is not None
    with httpx.Client(base_url=relay_server.url) as v1:
        assert v1.get("/v1/models", headers={"authorization": f"Bearer {old}"}).status_code == 200  # inside the window
        assert v1.get("/v1/models", headers={"authorization": f"Bearer {new}"}).status_code == 200
    again = alice.http.post(f"/tenants/{alice.tenant.pk}/keys/{alice.key_id}/rotate", json={"overlap_s": 0})
    with httpx.Client(base_url=relay_server.url) as v1:
        assert v1.get("/v1/models", headers={"authorization": f"Bearer {new}"}).status_code == 401  # overlap 0: stops now
        assert v1.get("/v1/models", headers={"authorization": f"Bearer {again.json()['key']}"}).status_code == 200


def test_another_tenants_key_cannot_be_rotated(alice, bob):
    refused = bob.http.post(f"/tenants/{alice.tenant.pk}/keys/{alice.key_id}/rotate", json={"overlap_s": 0})
    assert refused.status_code == 404
    assert ApiKey.objects.get(pk=alice.key_id).previous_key_hash is None


def test_rotate_key_prints_the_new_secret_once(alice):
    from io import StringIO

    out = StringIO()
    call_command("rotate_key", str(alice.key_id), "--overlap", "60", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["id"] == alice.key_id and printed["key"].startswith("sk-") and printed["previous_expires_at"]


def test_every_api_write_leaves_one_audit_record_with_its_token_and_no_secret(operator, alice):
    made = operator.post(f"/tenants/{alice.tenant.pk}/keys", json={"name": "from the api"})
    assert made.status_code == 201
    secret = made.json()["key"]
    records = list(AuditRecord.objects.filter(action__startswith="api.post"))
    assert len(records) == 1
    assert records[0].actor == "token:ops" and records[0].target_type == "tenants"
    assert records[0].after == {"name": "from the api"}
    assert secret not in json.dumps([r.after for r in AuditRecord.objects.all()])
    operator.get(f"/tenants/{alice.tenant.pk}/keys")  # reads leave nothing
    assert AuditRecord.objects.filter(action__startswith="api.").count() == 1


def test_operators_generate_redemption_codes_through_the_api_and_members_cannot(operator, alice, relay_server):
    made = operator.post("/redemption-batches", json={"balance": "credit", "amount_micros": 2_000_000, "count": 3, "note": "promo"})
    assert made.status_code == 201, made.text
    codes = made.json()["codes"]
    assert len(codes) == 3 and len(set(codes)) == 3
    from billing.models import RedemptionCode

    stored = set(RedemptionCode.objects.values_list("code_hash", flat=True))
    assert len(stored) == 3 and not stored & set(codes)  # only hashes are kept
    assert alice.http.post("/redemption-batches", json={"balance": "credit", "amount_micros": 1, "count": 1}).status_code == 403
    assert operator.post("/redemption-batches", json={"balance": "credit", "amount_micros": 0, "count": 1}).status_code == 422
