"""The portal's cast: alice and bob own separate tenants, charlie is a member of alice's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import make_tenant

PASSWORD = "a long and unusual passphrase 42"


@dataclass
class Person:
    user: object
    email: str
    tenant: object
    role: str


def make_person(email: str, tenant, role: str) -> Person:
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from accounts.services import membership_add

    user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    membership_add(user=user, tenant=tenant, role=role)
    return Person(user, email, tenant, role)


@pytest.fixture
def cast(transactional_db):
    alice_tenant = make_tenant("alice-team")
    bob_tenant = make_tenant("bob-team")
    return {
        "alice": make_person("alice@example.com", alice_tenant, "owner"),
        "bob": make_person("bob@example.com", bob_tenant, "owner"),
        "charlie": make_person("charlie@example.com", alice_tenant, "member"),
    }


@pytest.fixture
def login(client):
    def sign_in(person: Person):
        client.force_login(person.user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return sign_in
