"""Values the CLI refuses, the API refuses too (400 invalid_request, nothing changed): each check
lives in the service both go through, so this file asks both the same thing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Tenant
from billing.models import Group
from billing.services import group_set
from channels.models import Channel
from channels.services import model_ensure
from tests.conftest import make_channel

from .conftest import assert_error


def cli_refuses(*args) -> str:
    with pytest.raises(CommandError) as info:
        call_command(*args, "--json", stdout=StringIO(), stderr=StringIO())
    return str(info.value)


def test_a_group_gets_only_a_known_routing_mode(operator):
    group_set(name="vip", ratio="0.8", mode="cheap")
    for name in ("default", "vip"):
        before = list(Group.objects.filter(name=name).values_list("ratio", "mode"))
        error = assert_error(operator.put(f"/groups/{name}", json={"ratio": 1, "mode": "nosuchmode"}), 400, "invalid_request")
        assert "unknown mode 'nosuchmode'" in error["message"]
        assert "unknown mode 'nosuchmode'" in cli_refuses("set_group", name, "--ratio", "1", "--mode", "nosuchmode")
        assert list(Group.objects.filter(name=name).values_list("ratio", "mode")) == before
    assert operator.put("/groups/vip", json={"ratio": 1, "mode": "thompson"}).json()["mode"] == "thompson"
    assert operator.put("/groups/vip", json={"ratio": 1, "mode": ""}).json()["mode"] == ""  # clears it


def test_a_channel_may_name_a_group_before_it_is_made(operator):
    """A channel set up for a group its tenants have not joined yet serves nobody until then;
    a malformed group name is refused on every path."""
    body = {"name": "c1", "provider_type": "simulated", "base_url": "sim://", "models": [{"model": "m1"}], "groups": ["later"]}
    assert operator.post("/channels", json=body).json()["groups"] == ["later"]
    bad = assert_error(operator.post("/channels", json={**body, "name": "c2", "groups": ["bad group"]}), 400, "invalid_request")
    assert "letters, digits" in bad["message"]
    assert "letters, digits" in cli_refuses(
        "add_channel", "c3", "--type", "simulated", "--base-url", "sim://", "--models", "m1", "--groups", "bad group", "--no-check"
    )
    assert not Channel.objects.filter(name__in=["c2", "c3"]).exists()


def test_a_tenant_moves_only_to_an_existing_group(operator, alice):
    assert_error(operator.patch(f"/tenants/{alice.tenant.pk}", json={"group": "nosuch"}), 400, "invalid_request")
    assert Tenant.objects.get(pk=alice.tenant.pk).group == "default"


def test_a_key_names_catalog_models(operator, alice):
    model_ensure(public_id="gpt-known")
    url = f"/tenants/{alice.tenant.pk}/keys"
    keys = ApiKey.objects.count()
    for client in (operator, alice.http):
        error = assert_error(client.post(url, json={"name": "k", "models": ["gpt-known", "no-such-model"]}), 400, "invalid_request")
        assert "unknown model(s): no-such-model" in error["message"]
    assert "unknown model(s): no-such-model" in cli_refuses("create_api_key", alice.tenant.name, "--models", "gpt-known,no-such-model")
    assert ApiKey.objects.count() == keys
    made = operator.post(url, json={"models": ["gpt-known"], "expires_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()})
    assert made.status_code == 201 and made.json()["allowed_models"] == ["gpt-known"]


def test_a_key_made_already_expired_is_refused_from_its_first_request(operator, alice, relay_server):
    """An expiry in the past is accepted on every path (a script that needs an expired key
    makes one); the key never serves."""
    import httpx

    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    made = operator.post(f"/tenants/{alice.tenant.pk}/keys", json={"name": "old", "expires_at": past})
    assert made.status_code == 201
    answer = httpx.get(relay_server.url + "/v1/models", headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]


def test_a_key_past_its_expiry_or_model_can_still_be_renamed(alice):
    from accounts.services import api_key_update
    from channels.models import Model

    model_ensure(public_id="gpt-gone")
    made = alice.http.post(f"/tenants/{alice.tenant.pk}/keys", json={
        "models": ["gpt-gone"], "expires_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()})
    key = ApiKey.objects.get(pk=made.json()["id"])
    Model.objects.filter(public_id="gpt-gone").delete()
    ApiKey.objects.filter(pk=key.pk).update(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    key.refresh_from_db()
    # only what changes is checked: what the key already had stays acceptable
    assert api_key_update(key=key, name="renamed", allowed_models=["gpt-gone"], expires_at=key.expires_at).name == "renamed"
    assert api_key_update(key=key, rpm=5).rpm == 5


def test_a_rate_limit_of_zero_is_refused_not_read_as_none(operator, alice):
    """The relay reads an rpm or tpm of 0 as no limit: the API refuses it as the CLI does
    (tests/common/test_command_arguments.py)."""
    url = f"/tenants/{alice.tenant.pk}/keys"
    keys = ApiKey.objects.count()
    for field in ("rpm", "tpm"):
        error = assert_error(operator.post(url, json={"name": "k", field: 0}), 400, "invalid_request")
        assert f"{field} must be at least 1" in error["message"]
    assert ApiKey.objects.count() == keys
    assert operator.post(url, json={"name": "k", "rpm": 1, "tpm": 1}).status_code == 201
