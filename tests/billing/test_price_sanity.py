"""Prices stay sane: no negative price or tier gets in by any door (command, admin, database),
and a tenant's time zone is checked wherever a tenant is saved."""

import subprocess

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction

from accounts.models import Tenant
from billing import services as billing
from billing.models import Price
from tests.common.test_commands import manage
from tests.conftest import make_price, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(client):
    client.force_login(User.objects.create_superuser("op", "op@example.com", "a-long-password-1"))
    return client


def test_set_price_refuses_a_negative_tier_and_changes_nothing():
    assert manage("set_model", "gpt-x").returncode == 0  # set_price names models of the catalog
    result = manage("set_price", "gpt-x", "--input", "1", "--output", "2", "--tiers", '[{"above_prompt_tokens": 1000, "input": -5}]')
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "tier" in result.stderr
    assert not Price.objects.filter(model="gpt-x").exists()


@pytest.mark.parametrize("field", ["cached_input_usd_per_m", "cache_write_usd_per_m", "request_usd"])
def test_price_set_refuses_every_negative_price(field):
    with pytest.raises(ValueError, match="must not be negative"):
        billing.price_set(model="m", input_usd_per_m="1", output_usd_per_m="1", **{field: "-0.5"})
    assert not Price.objects.exists()


@pytest.mark.parametrize("field", ["cached_input_micros_per_m", "cache_write_micros_per_m", "input_micros_per_m"])
def test_the_database_refuses_a_negative_price(field):
    make_price("m", "1", "2")
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.filter(model="m").update(**{field: -1})


def test_postgresql_refuses_a_negative_tier():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's CHECK cannot look into JSON; the services and admin refuse it there")
    make_price("m", "1", "2")
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.filter(model="m").update(tiers=[{"above_prompt_tokens": 10, "input_micros_per_m": -1}])


def test_the_admin_refuses_a_negative_cached_price(operator):
    price = make_price("m", "1", "2")
    form = {
        "model": "m", "input_micros_per_m": "1000000", "output_micros_per_m": "2000000", "cached_input_micros_per_m": "-5",
        "cache_write_micros_per_m": "", "request_micros": "0", "tiers": "[]",
    }
    response = operator.post(f"/admin/billing/price/{price.pk}/change/", form)
    assert response.status_code == 200 and b"must not be negative" in response.content
    assert Price.objects.get(pk=price.pk).cached_input_micros_per_m is None


def test_a_tenant_time_zone_typo_is_refused_by_the_command_and_the_admin(operator):
    result = manage("create_tenant", "acme", "--timezone", "Europe/Berln")
    assert result.returncode != 0 and "time zone" in result.stderr and not Tenant.objects.filter(name="acme").exists()
    tenant = make_tenant("acme")
    response = operator.post(
        f"/admin/accounts/tenant/{tenant.pk}/change/", {"name": "acme", "group": "default", "status": "active", "timezone": "Mars/Olympus"}
    )
    assert response.status_code == 200 and b"is unknown" in response.content
    assert Tenant.objects.get(pk=tenant.pk).timezone == "UTC"


def test_a_bad_stored_time_zone_does_not_refuse_capped_keys():
    assert billing.cap_periods("Not/AZone") == billing.cap_periods("UTC")
