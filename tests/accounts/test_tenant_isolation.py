"""Walks the URL configuration: every portal page that takes an object id answers 404 when
alice asks for bob's object, on GET and on POST. A new route with an id it cannot fill fails
here until the test learns how to make that kind of object."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import make_key

PORTAL_MODULES = ("accounts.", "observability.", "billing.", "research.")


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def portal_routes_with_ids() -> list[tuple[str, URLPattern]]:
    routes = []
    for route, pattern in _walk(get_resolver().url_patterns):
        module = getattr(pattern.callback, "__module__", "")
        converters = pattern.pattern.converters
        if module.startswith(PORTAL_MODULES) and any(type(c).__name__ == "IntConverter" for c in converters.values()):
            routes.append((route, pattern))
    return routes


def bobs_objects(bob) -> dict[str, int]:
    """One object of bob's for each kind of id the portal's URLs take."""
    from accounts.models import Membership
    from accounts.services import invitation_create
    from observability.models import RequestLog
    from django.utils import timezone

    key = make_key(bob.tenant, name="bob's key")
    invitation, _ = invitation_create(tenant=bob.tenant, email="dave@example.com", role="member", invited_by=bob.user)
    log = RequestLog.objects.create(request_id="req_bob", tenant_id=bob.tenant.pk, key_id=key.key_id, status=200, created_at=timezone.now())
    from research.models import ResearchRun

    run = ResearchRun.objects.create(tenant=bob.tenant, question="bob's question", max_cost_micros=1_000_000, status="succeeded")
    return {
        "key_id": key.key_id,
        "member_id": Membership.objects.get(user=bob.user).pk,
        "invite_id": invitation.pk,
        "log_id": log.pk,
        "run_id": run.pk,
    }


def test_the_walk_finds_the_portals_object_pages():
    found = {route for route, _ in portal_routes_with_ids()}
    assert "keys/<int:key_id>/" in found and "logs/<int:log_id>/" in found and "research/<int:run_id>/" in found


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_tenants_ids_are_404_on_every_portal_page(cast, login, method):
    bob = cast["bob"]
    ids = bobs_objects(bob)
    client = login(cast["alice"])  # an owner: every permission, so only the tenant can refuse
    routes = portal_routes_with_ids()
    assert routes
    for route, pattern in routes:
        kwargs = {}
        for name in pattern.pattern.converters:
            assert name in ids, f"{route}: teach this test to make another tenant's {name}"
            kwargs[name] = ids[name]
        path = "/" + route
        for name, value in kwargs.items():
            path = path.replace(f"<int:{name}>", str(value))
        response = getattr(client, method)(path)
        assert response.status_code in (404, 405), f"{method.upper()} {path} answered {response.status_code}"
        if response.status_code == 405:
            assert method == "get"  # a POST-only action: the POST must be the 404
    from accounts.models import ApiKey, Invitation, Membership

    assert ApiKey.objects.get(pk=ids["key_id"]).status == "active"
    assert Invitation.objects.filter(pk=ids["invite_id"]).exists()
    assert Membership.objects.filter(pk=ids["member_id"], role="owner").exists()
    from research.models import ResearchRun

    assert ResearchRun.objects.filter(pk=ids["run_id"], status="succeeded").exists()  # not deleted
    assert ResearchRun.objects.count() == 1  # and not duplicated (into anybody's tenant)


def test_a_member_cannot_reach_a_teammates_key_by_id(cast, login):
    from accounts.services import api_key_create

    key, _ = api_key_create(tenant=cast["alice"].tenant, name="owner's", created_by=cast["alice"].user)
    client = login(cast["charlie"])
    assert client.get(f"/keys/{key.pk}/").status_code == 404
    assert client.post(f"/keys/{key.pk}/revoke/").status_code == 404
    assert client.post(f"/keys/{key.pk}/rotate/", {"overlap_s": "0"}).status_code == 404
    key.refresh_from_db()
    assert key.status == "active"
