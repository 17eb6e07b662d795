"""The management API's view of the cast (tests/conftest.py), on the real relay over HTTP:

- alice, bob and charlie are the top conftest's, each with a signed-in `http` client of the
  management API and their `member_id`;
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


def on_the_api(base_url: str, actor) -> Person:
    from accounts.models import Membership

    member_id = Membership.objects.get(user=actor.user, tenant=actor.tenant).pk
    return Person(actor.user, actor.tenant, actor.key_id, actor.key, session_client(base_url, actor.user), member_id)


# Each overrides the top conftest's fixture of the same name, which it receives as its argument
# (and fixtures up there that ask for `alice` get this one). alice brings bob along, and both
# tenants get a request log, so every kind of object id exists for both.
@pytest.fixture
def bob(relay_server, bob):
    person = on_the_api(relay_server.url, bob)
    yield person
    person.http.close()


@pytest.fixture
def alice(relay_server, alice, bob):
    person = on_the_api(relay_server.url, alice)
    for someone in (person, bob):
        _log_request(someone.tenant, someone.key_id, f"req-{someone.user.username}")
    yield person
    person.http.close()


@pytest.fixture
def charlie(relay_server, charlie):
    person = on_the_api(relay_server.url, charlie)
    yield person
    person.http.close()


@pytest.fixture
def cast(alice, bob, charlie):
    return {"alice": alice, "bob": bob, "charlie": charlie}


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
