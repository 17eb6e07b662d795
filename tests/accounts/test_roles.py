"""Roles are enforced in one place (accounts.portal); each page's need is checked per role."""

from __future__ import annotations

import pytest
from django.urls import get_resolver

from accounts.roles import ROLE_PERMISSIONS, role_allows
from tests.accounts.test_tenant_isolation import _walk

PAGES = {"/": "view", "/keys/": "keys.own", "/usage/": "usage", "/logs/": "usage", "/ledger/": "billing",
         "/pricing/": "view", "/quickstart/": "view", "/team/": "team"}


def test_every_portal_view_declares_its_permission():
    for route, pattern in _walk(get_resolver().url_patterns):
        module = getattr(pattern.callback, "__module__", "")
        if module.startswith(("accounts.views", "observability.views", "billing.views", "billing.pricing_page", "billing.ledger_page")):
            if pattern.callback.__name__ in ("invitation_open", "switch_tenant"):
                continue  # any signed-in user: they check membership themselves
            if pattern.callback.__name__ == "stripe_webhook":
                continue  # Stripe's, not a person's: its signature is its authentication
            assert hasattr(pattern.callback, "portal_permission"), f"{route} is not a portal_view"


def test_each_role_has_what_the_one_below_has_and_more():
    member, admin, owner = (ROLE_PERMISSIONS[r] for r in ("member", "admin", "owner"))
    assert member < admin < owner
    assert "billing" in owner - admin and {"keys.all", "team"} <= admin - member


def test_an_unknown_permission_is_a_bug_not_a_refusal():
    with pytest.raises(ValueError):
        role_allows(role="owner", permission="everything")


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_each_page_answers_by_role(cast, login, who):
    person = cast[who]
    client = login(person)
    for path, permission in PAGES.items():
        expected = 200 if role_allows(role=person.role, permission=permission) else 403
        response = client.get(path)
        assert response.status_code == expected, (who, path, response.status_code)
        if expected == 403:
            assert b"Ask an owner" in response.content


def test_a_member_sees_only_their_own_keys_and_no_billing_links(cast, login):
    from accounts.services import api_key_create

    api_key_create(tenant=cast["alice"].tenant, name="owner-secret-project", created_by=cast["alice"].user)
    api_key_create(tenant=cast["alice"].tenant, name="charlies-key", created_by=cast["charlie"].user)
    page = login(cast["charlie"]).get("/keys/").content.decode()
    assert "charlies-key" in page and "owner-secret-project" not in page
    assert 'href="/ledger/"' not in page and 'href="/topup/"' not in page and 'href="/team/"' not in page


def test_an_admin_manages_every_key_and_the_team_but_not_billing(cast, login):
    from accounts.services import api_key_create, membership_set_role
    from accounts.models import Membership

    key, _ = api_key_create(tenant=cast["alice"].tenant, name="owner's", created_by=cast["alice"].user)
    membership_set_role(membership=Membership.objects.get(user=cast["charlie"].user), role="admin")
    client = login(cast["charlie"])
    assert "owner&#x27;s" in client.get("/keys/").content.decode()
    assert client.post(f"/keys/{key.pk}/revoke/").status_code == 302
    key.refresh_from_db()
    assert key.status == "revoked"
    assert client.get("/team/").status_code == 200
    assert client.get("/ledger/").status_code == 403


def test_an_admin_cannot_demote_or_remove_an_owner(cast, login):
    from accounts.models import Membership
    from accounts.services import membership_set_role

    membership_set_role(membership=Membership.objects.get(user=cast["charlie"].user), role="admin")
    owner = Membership.objects.get(user=cast["alice"].user)
    client = login(cast["charlie"])
    client.post(f"/team/members/{owner.pk}/role/", {"role": "member"})
    client.post(f"/team/members/{owner.pk}/remove/")
    client.post(f"/team/members/{Membership.objects.get(user=cast['charlie'].user).pk}/role/", {"role": "owner"})
    assert Membership.objects.get(pk=owner.pk).role == "owner"
    assert Membership.objects.get(user=cast["charlie"].user).role == "admin"


def test_the_last_owner_cannot_leave(cast, login):
    from accounts.models import Membership

    owner = Membership.objects.get(user=cast["alice"].user)
    client = login(cast["alice"])
    response = client.post(f"/team/members/{owner.pk}/role/", {"role": "member"}, follow=True)
    assert b"at least one owner" in response.content
    assert Membership.objects.get(pk=owner.pk).role == "owner"


def test_a_user_in_two_teams_switches_between_them(cast, login):
    from accounts.services import membership_add

    membership_add(user=cast["charlie"].user, tenant=cast["bob"].tenant, role="admin")
    client = login(cast["charlie"])
    assert client.get("/team/").status_code == 403  # member in alice's, the first by name
    client.post("/switch/", {"tenant_id": cast["bob"].tenant.pk})
    assert client.get("/team/").status_code == 200  # admin in bob's team
    client.post("/switch/", {"tenant_id": cast["alice"].tenant.pk})
    assert client.get("/team/").status_code == 403  # member in alice's
    assert client.post("/switch/", {"tenant_id": 999999}).status_code == 404
