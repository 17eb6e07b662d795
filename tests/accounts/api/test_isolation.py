"""Tenant isolation, for every route of the management API read from its own OpenAPI schema
(so a new route is covered without a new test): a portal user of another tenant gets 404 for
any object of alice's tenant (403 on operator-only routes), learns nothing, and changes nothing.
"""

from __future__ import annotations

import re

import pytest

from accounts.models import ApiKey, Membership, Tenant
from billing.models import LedgerEntry
from relay.api import api

from .conftest import assert_error

# A valid body for each request schema: an invalid one would be refused (422) before the
# handler could prove isolation. A route with a new schema fails here until it has one.
BODIES = {
    "TenantIn": {"name": "stolen"},
    "TenantPatch": {"status": "suspended", "group": "vip"},
    "MemberIn": {"user": "bob", "role": "owner"},
    "RoleIn": {"role": "member"},
    "KeyIn": {"name": "sneaky"},
    "AdjustmentIn": {"balance": "credit", "amount_micros": 5_000_000, "idempotency_key": "steal"},
    "PriceIn": {"model": "gpt-test", "input_usd_per_m": "0", "output_usd_per_m": "0"},
    "GroupIn": {"ratio": "0"},
    "ChannelIn": {"name": "c", "provider_type": "simulated", "base_url": "sim://", "models": [{"model": "m"}]},
    "ChannelPatch": {"weight": 5},
    "DisableIn": {"reason": "bob was here"},
    "ModelIn": {"public_id": "m"},
    "RotateIn": {"overlap_s": 0},
    "RedemptionBatchIn": {"balance": "credit", "amount_micros": 1000000, "count": 1},
}

SCHEMA = api.get_openapi_schema(path_prefix="")


def _routes():
    for path, operations in SCHEMA["paths"].items():
        for method, operation in operations.items():
            if "{" in path:
                yield pytest.param(method.upper(), path, operation, id=f"{method.upper()} {path}")


def _body(operation):
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    name = content["schema"]["$ref"].rsplit("/", 1)[1]
    assert name in BODIES, f"add a valid example body for {name} to BODIES"
    return BODIES[name]


def _fill(path: str, ids: dict) -> str:
    def one(match):
        name = match.group(1)
        assert name in ids, f"no id for path parameter {name!r}: add it to the cast's ids"
        return str(ids[name])

    return re.sub(r"\{(\w+)\}", one, path)


def _snapshot(tenant_id: int):
    return (
        list(Tenant.objects.filter(pk=tenant_id).values_list("name", "group", "status")),
        sorted(ApiKey.objects.filter(tenant_id=tenant_id).values_list("id", "status", "name")),
        sorted(Membership.objects.filter(tenant_id=tenant_id).values_list("id", "user_id", "role")),
        LedgerEntry.objects.filter(balance__tenant_id=tenant_id).count(),
    )


@pytest.mark.parametrize("method,path,operation", list(_routes()))
def test_another_tenants_ids_are_404(method, path, operation, alice, bob, charlie):
    from tests.conftest import make_channel

    channel = make_channel("isolated", "sim://", provider_type="simulated")
    alices = {"tenant_id": alice.tenant.pk, "key_id": alice.key_id, "member_id": charlie.member_id,
              "channel_id": channel.pk, "name": "default"}
    # bob's own tenant with alice's objects inside it: the object lookup must be scoped too
    mixed = {**alices, "tenant_id": bob.tenant.pk}
    before = _snapshot(alice.tenant.pk)
    body = _body(operation)
    tenant_scoped = path.startswith("/tenants/{tenant_id}")
    for ids in (alices, mixed) if tenant_scoped else (alices,):
        if ids is mixed and path.count("{") == 1:
            continue  # bob's own tenant alone is his to see
        response = bob.http.request(method, _fill(path, ids), json=body)
        if tenant_scoped:
            assert_error(response, 404, "not_found")
        else:
            assert_error(response, 403, "forbidden")  # operator-only: no session user gets in at all
        assert "alice" not in response.text and alice.key[:10] not in response.text
    assert _snapshot(alice.tenant.pk) == before
    if method == "GET" and tenant_scoped:
        # the same URL works for alice: the ids were real
        assert alice.http.get(_fill(path, alices)).status_code == 200


def test_every_route_with_an_id_is_walked():
    walked = {p.values[1] for p in _routes()}
    assert {"/tenants/{tenant_id}/keys/{key_id}", "/channels/{channel_id}", "/tenants/{tenant_id}/logs"} <= walked
