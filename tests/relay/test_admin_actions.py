"""Every admin action declares the permission it needs: a staff user who may only view cannot
run any of them. Built from the admin site's registry, so a new action is covered unasked."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import RequestFactory

from tests.conftest import make_key, make_tenant


def _every_action():
    for model, model_admin in admin.site._registry.items():
        for func, name, _description in model_admin._get_base_actions():
            yield model, model_admin, name, func


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


@pytest.fixture
def viewer(db):
    user = User.objects.create_user("viewer", password="a long viewer password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return User.objects.get(pk=user.pk)  # fresh: permissions are cached on the instance


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", password="a long root password")


def test_every_registered_action_declares_its_permissions():
    undeclared = [f"{model._meta.label}.{name}" for model, _, name, func in _every_action() if not getattr(func, "allowed_permissions", ())]
    assert undeclared == []


def test_a_view_only_staff_user_is_offered_no_action(viewer, superuser):
    offered_to_viewer = {}
    offered_to_superuser = set()
    for model, model_admin, name, _ in _every_action():
        if name in model_admin.get_actions(_request(viewer)):
            offered_to_viewer.setdefault(model._meta.label, []).append(name)
        if name in model_admin.get_actions(_request(superuser)):
            offered_to_superuser.add(f"{model._meta.label}.{name}")
    assert offered_to_viewer == {}
    # and the actions are not simply switched off for everyone
    assert {"accounts.Tenant.suspend", "accounts.ApiKey.revoke", "billing.PriceChange.accept"} <= offered_to_superuser


def test_a_view_only_staff_user_cannot_revoke_a_key_or_suspend_a_tenant_through_the_admin(viewer, client):
    from accounts.models import ApiKey, Tenant

    tenant = make_tenant("victim")
    actor = make_key(tenant)
    client.force_login(viewer)
    for url, action, pk in (
        ("/admin/accounts/apikey/", "revoke", actor.key_id),
        ("/admin/accounts/tenant/", "suspend", tenant.pk),
    ):
        response = client.post(url, {"action": action, "_selected_action": [pk], "index": 0})
        assert response.status_code in (200, 302, 403)
    assert ApiKey.objects.get(pk=actor.key_id).status == ApiKey.Status.ACTIVE
    assert Tenant.objects.get(pk=tenant.pk).status == Tenant.Status.ACTIVE


def test_a_staff_user_with_change_permission_can_revoke_a_key(client, db):
    from accounts.models import ApiKey

    user = User.objects.create_user("keeper", password="a long keeper password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_apikey", "change_apikey"]))
    actor = make_key(make_tenant("owner"))
    client.force_login(user)
    client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [actor.key_id], "index": 0})
    assert ApiKey.objects.get(pk=actor.key_id).status != ApiKey.Status.ACTIVE
