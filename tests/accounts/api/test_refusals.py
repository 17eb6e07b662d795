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


def test_a_channel_serves_only_existing_groups(operator):
    body = {"name": "c1", "provider_type": "simulated", "base_url": "sim://", "models": [{"model": "m1"}], "groups": ["nosuch"]}
    error = assert_error(operator.post("/channels", json=body), 400, "invalid_request")
    assert "unknown group(s) nosuch" in error["message"]
    assert "unknown group(s) nosuch" in cli_refuses(
        "add_channel", "c1", "--type", "simulated", "--base-url", "sim://", "--models", "m1", "--groups", "default,nosuch", "--no-check"
    )
    assert not Channel.objects.filter(name="c1").exists()
    channel = make_channel("c2", "sim://", provider_type="simulated")
    assert_error(operator.patch(f"/channels/{channel.pk}", json={"groups": ["default", "nosuch"]}), 400, "invalid_request")
    assert "unknown group(s) nosuch" in cli_refuses("update_channel", "c2", "--groups", "nosuch")
    channel.refresh_from_db()
    assert channel.groups == ["default"]
    group_set(name="vip", ratio="1")
    assert operator.patch(f"/channels/{channel.pk}", json={"groups": ["default", "vip"]}).json()["groups"] == ["default", "vip"]


def test_a_tenant_moves_only_to_an_existing_group(operator, alice):
    assert_error(operator.patch(f"/tenants/{alice.tenant.pk}", json={"group": "nosuch"}), 400, "invalid_request")
    assert Tenant.objects.get(pk=alice.tenant.pk).group == "default"


def test_a_key_names_catalog_models_and_expires_ahead(operator, alice):
    model_ensure(public_id="gpt-known")
    url = f"/tenants/{alice.tenant.pk}/keys"
    keys = ApiKey.objects.count()
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    for client in (operator, alice.http):
        error = assert_error(client.post(url, json={"name": "k", "models": ["gpt-known", "no-such-model"]}), 400, "invalid_request")
        assert "unknown model(s): no-such-model" in error["message"]
        error = assert_error(client.post(url, json={"name": "k", "expires_at": past.isoformat()}), 400, "invalid_request")
        assert "expires_at must be in the future" in error["message"]
    assert "unknown model(s): no-such-model" in cli_refuses("create_api_key", alice.tenant.name, "--models", "gpt-known,no-such-model")
    assert "in the future" in cli_refuses("create_api_key", alice.tenant.name, "--expires", past.isoformat())
    assert ApiKey.objects.count() == keys
    made = operator.post(url, json={"models": ["gpt-known"], "expires_at": (past + timedelta(days=1)).isoformat()})
    assert made.status_code == 201 and made.json()["allowed_models"] == ["gpt-known"]


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
