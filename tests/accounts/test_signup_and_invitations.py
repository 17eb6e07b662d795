"""Sign-up, email verification, password reset and invitations, through the real pages."""

from __future__ import annotations

from django.test import Client

import re

import pytest
from django.core import mail

from tests.conftest import PORTAL_PASSWORD as PASSWORD


def _link(message, pattern: str) -> str:
    found = re.search(r"https?://[^/\s]+(" + pattern + r"[^\s]*)", message.body)
    assert found, message.body
    return found.group(1)


def sign_up(client, email: str):
    return client.post("/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def test_sign_up_makes_a_tenant_the_new_user_owns_after_they_verify(client, transactional_db):
    from accounts.models import Membership

    response = sign_up(client, "dora@example.com")
    assert response.status_code == 302
    assert client.get("/keys/").status_code == 302  # not signed in until verified
    assert client.post("/login/", {"login": "dora@example.com", "password": PASSWORD}).url != "/"
    (message,) = mail.outbox
    assert message.to == ["dora@example.com"]
    confirm = _link(message, "/confirm-email/")
    assert client.post(confirm).status_code == 302
    client.post("/login/", {"login": "dora@example.com", "password": PASSWORD})
    assert client.get("/keys/").status_code == 200
    (membership,) = Membership.objects.filter(user__email="dora@example.com")
    assert membership.role == "owner" and membership.tenant.name == "dora"


def test_passwords_are_hashed_with_argon2(client, transactional_db):
    from django.contrib.auth import get_user_model

    sign_up(client, "erin@example.com")
    assert get_user_model().objects.get(email="erin@example.com").password.startswith("argon2")


def test_sign_up_credit_is_a_ledger_entry_once(client, transactional_db, settings):
    from billing.selectors import balances_get, ledger_entries
    from accounts.models import Membership

    settings.SIGNUP_CREDIT_USD = "1.5"
    sign_up(client, "fay@example.com")
    tenant = Membership.objects.get(user__email="fay@example.com").tenant
    (entry,) = ledger_entries(tenant_id=tenant.pk)
    assert entry.amount_micros == 1_500_000 and entry.note == "sign-up credit"
    assert balances_get(tenant_id=tenant.pk)["credit"].amount_micros == 1_500_000


def test_no_sign_up_credit_by_default(client, transactional_db):
    from billing.selectors import ledger_entries
    from accounts.models import Membership

    sign_up(client, "gus@example.com")
    assert ledger_entries(tenant_id=Membership.objects.get(user__email="gus@example.com").tenant_id) == []


def test_two_sign_ups_with_the_same_local_part_get_two_tenants(client, transactional_db):
    from accounts.models import Membership

    sign_up(client, "hal@example.com")
    client.logout()
    sign_up(client, "hal@example.org")
    names = sorted(Membership.objects.values_list("tenant__name", flat=True))
    assert names == ["hal", "hal-2"]


def test_password_reset_goes_by_email(cast, client):
    client.post("/password/reset/", {"email": "alice@example.com"})
    (message,) = mail.outbox
    link = _link(message, "/password/reset/key/")
    form = client.get(link, follow=True)
    assert form.status_code == 200
    new = "another long passphrase 77"
    client.post(form.redirect_chain[-1][0] if form.redirect_chain else link, {"password1": new, "password2": new})
    # through the login page (axes guards authenticate(), which needs the request)
    signed_in = Client().post("/login/", {"login": "alice@example.com", "password": new})
    assert signed_in.status_code == 302 and signed_in.headers["location"] == "/"


def test_an_invitation_by_email_makes_a_member_once(cast, login):
    from accounts.models import Membership

    client = login(cast["alice"])
    client.post("/team/", {"email": "bob@example.com", "role": "member"})
    (message,) = mail.outbox
    link = _link(message, "/invite/")
    client.logout()
    client.force_login(cast["charlie"].user)  # the wrong person opens it
    assert client.post(link).status_code == 400
    client.force_login(cast["bob"].user)
    assert client.post(link).status_code == 302
    assert Membership.objects.get(user=cast["bob"].user, tenant=cast["alice"].tenant).role == "member"
    assert client.get("/team/").status_code == 403  # now working in alice's team, as a member
    assert client.post(link).status_code == 400  # used up


def test_an_invitation_cannot_make_an_owner(cast, login):
    from accounts.models import Invitation

    response = login(cast["alice"]).post("/team/", {"email": "x@example.com", "role": "owner"})
    assert response.status_code == 400
    assert not Invitation.objects.exists() and not mail.outbox


def test_a_member_cannot_invite(cast, login):
    response = login(cast["charlie"]).post("/team/", {"email": "x@example.com", "role": "admin"})
    assert response.status_code == 403 and not mail.outbox


@pytest.mark.parametrize("path", ["/", "/keys/", "/usage/", "/logs/", "/ledger/", "/pricing/", "/quickstart/", "/team/"])
def test_pages_send_strangers_to_the_login(client, transactional_db, path):
    response = client.get(path)
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_an_email_longer_than_the_user_table_holds_is_a_form_error_and_makes_nobody(client, transactional_db):
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from accounts.models import Tenant

    email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"  # 261 characters, a valid address
    assert len(email) > 254
    response = sign_up(client, email)
    assert response.status_code == 200 and "email" in response.context["form"].errors
    assert not get_user_model().objects.exists() and not EmailAddress.objects.exists()
    assert not Tenant.objects.exists() and not mail.outbox


def test_an_invitation_to_an_over_long_email_is_refused(cast, login):
    from accounts.models import Invitation

    email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"
    response = login(cast["alice"]).post("/team/", {"email": email, "role": "member"})
    assert response.status_code == 400 and "email" in response.context["form"].errors
    assert not Invitation.objects.exists() and not mail.outbox
