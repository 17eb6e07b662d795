"""A tenant's name is never only digits: commands take TENANT as a name or an id, and a name "3"
would hide the tenant whose id is 3. The service refuses it, so the CLI, the management API and
the admin agree; sign-up never derives such a name from an address."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Membership, Tenant
from accounts.services import InvalidInput, tenant_create, tenant_update
from tests.conftest import PORTAL_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "tenant name '3' is only digits"


def test_a_tenant_named_only_digits_is_refused():
    with pytest.raises(InvalidInput, match=REFUSED):
        tenant_create(name="3")
    with pytest.raises(InvalidInput, match="tenant name '٣' is only digits"):  # int() reads it as 3
        tenant_create(name="٣")

    assert not Tenant.objects.exists()


def test_a_name_with_digits_and_more_is_fine():
    assert tenant_create(name="team-3").name == "team-3"


def test_create_tenant_refuses_a_digit_name_so_credit_finds_tenants_by_id():
    with pytest.raises(CommandError, match=REFUSED):
        call_command("create_tenant", "3", "--json")
    acme = tenant_create(name="acme")

    out = StringIO()
    call_command("balance", str(acme.pk), "--json", stdout=out)
    assert set(json.loads(out.getvalue())) >= {"credit", "wallet"}
    assert list(Tenant.objects.values_list("name", flat=True)) == ["acme"]


def test_a_rename_to_only_digits_is_refused():
    acme = tenant_create(name="acme")

    with pytest.raises(InvalidInput, match="tenant name '42' is only digits"):
        tenant_update(tenant=acme, name="42")

    assert Tenant.objects.get(pk=acme.pk).name == "acme"


def _operator_token() -> str:
    out = StringIO()
    call_command("create_operator_token", "ops", "--json", stdout=out)
    return json.loads(out.getvalue())["token"]


def test_the_management_api_refuses_a_digit_name(client):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {_operator_token()}"}
    made = client.post("/api/v1/tenants", data=json.dumps({"name": "3"}), content_type="application/json", **auth)
    acme = tenant_create(name="acme")
    renamed = client.patch(f"/api/v1/tenants/{acme.pk}", data=json.dumps({"name": "7"}), content_type="application/json", **auth)

    assert made.status_code == 400 and REFUSED in made.json()["error"]["message"]
    assert renamed.status_code == 400 and "tenant name '7' is only digits" in renamed.json()["error"]["message"]
    assert list(Tenant.objects.values_list("name", flat=True)) == ["acme"]


def test_the_admin_refuses_a_digit_name(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "a long operator password"))
    page = client.post("/admin/accounts/tenant/add/", {"name": "3", "group": "default", "status": "active", "timezone": "UTC"})

    assert page.status_code == 200 and REFUSED in page.content.decode().replace("&#x27;", "'")
    assert not Tenant.objects.exists()


def test_sign_up_with_a_digit_address_gets_a_name_that_is_not_only_digits(client):
    for email in ("12345@example.com", "12345@example.org"):
        client.post("/signup/", {"email": email, "password1": PORTAL_PASSWORD, "password2": PORTAL_PASSWORD})
        client.logout()

    names = sorted(Membership.objects.values_list("tenant__name", flat=True))
    assert names == ["12345-team", "12345-team-2"]
