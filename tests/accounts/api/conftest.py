"""The management API's cast, on the real relay over HTTP:

- alice owns tenant "alice"; bob owns tenant "bob" (never sees alice's things);
- charlie is a plain member of alice's tenant;
- `operator` / `reader`: a read-write and a read-only operator token.
Each tenant has a key its owner made, a ledger entry and a request log, so every kind of
object id exists for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest
from django.core.management import call_command

from tests.conftest import make_tenant

CSRF = "c" * 32  # any 32-character secret works as both cookie and header


@dataclass
class Person:
    user: object
    tenant: object
    key_id: int
    key: str
    http: httpx.Client
    member_id: int
    ids: dict = field(default_factory=dict)


def session_client(base_url: str, user) -> httpx.Client:
    from django.conf import settings
    from django.test import Client

    django_client = Client()
    django_client.force_login(user)
    cookies = {settings.SESSION_COOKIE_NAME: django_client.cookies[settings.SESSION_COOKIE_NAME].value, settings.CSRF_COOKIE_NAME: CSRF}
    return httpx.Client(base_url=base_url + "/api/v1", cookies=cookies, headers={"X-CSRFToken": CSRF}, timeout=30)


def token_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def operator_token(*args: str) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("create_operator_token", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def _log_request(tenant, key_id: int, request_id: str, model: str = "gpt-test", status: int = 200) -> None:
    from django.utils import timezone

    from observability.services import request_log_submit, request_logs_flush

    request_log_submit(entry={"request_id": request_id, "tenant_id": tenant.pk, "key_id": key_id, "model": model, "status": status,
                              "prompt_tokens": 3, "completion_tokens": 5, "cost_micros": 17, "balance_kind": "credit", "currency": "USD",
                              "endpoint": "chat.completions", "latency_ms": 12, "overhead_ms": 1.0, "attempts": [],
                              "created_at": timezone.now()})
    request_logs_flush()


def make_person(base_url: str, username: str, tenant, role: str) -> Person:
    from django.contrib.auth import get_user_model

    from accounts.services import api_key_create, membership_create

    user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com")  # no password: sessions are made directly
    membership = membership_create(tenant=tenant, user=user, role=role)
    key, secret = api_key_create(tenant=tenant, name=f"{username}'s key", created_by=user)
    return Person(user, tenant, key.pk, secret, session_client(base_url, user), membership.pk)


@pytest.fixture
def cast(relay_server, transactional_db):
    base = relay_server.url
    alice = make_person(base, "alice", make_tenant("alice"), "owner")
    bob = make_person(base, "bob", make_tenant("bob"), "owner")
    charlie = make_person(base, "charlie", alice.tenant, "member")
    for person in (alice, bob):
        _log_request(person.tenant, person.key_id, f"req-{person.user.username}")
    yield {"alice": alice, "bob": bob, "charlie": charlie}
    for person in (alice, bob, charlie):
        person.http.close()


@pytest.fixture
def alice(cast):
    return cast["alice"]


@pytest.fixture
def bob(cast):
    return cast["bob"]


@pytest.fixture
def charlie(cast):
    return cast["charlie"]


@pytest.fixture
def operator(relay_server, transactional_db):
    made = operator_token("ops")
    with token_client(relay_server.url, made["token"]) as client:
        client.token_id = made["id"]
        yield client


@pytest.fixture
def reader(relay_server, transactional_db):
    made = operator_token("dashboards", "--read-only")
    with token_client(relay_server.url, made["token"]) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]
