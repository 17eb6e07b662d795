"""A change is in force for the next request, in every process (issue 9, item 11): a real
uvicorn process started from this checkout on the test database (SQLite file on the embedded
pass, PostgreSQL + Redis on the scale pass) sees a change made here by a command or a service
at its very next request: no waiting for a TTL, no first request served from an old table."""

import os
import sys
import time

import httpx
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from tests.conftest import make_channel, make_price, subprocess_database_url
from tests.relay.procs import Proc, free_port


@pytest.fixture
def web(tmp_path, transactional_db, settings):
    port = free_port()
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": django_settings.REDIS_URL or "",
        "TOKENHUB_UPSTREAM_ALLOW_CIDRS": "127.0.0.0/8",
        "EMBEDDED_JOBS": "false",
        "LOG_LEVEL": "WARNING",
        "ROUTING_TABLE_TTL_S": "3600",  # a change must not need the table to age out
        "KEY_CACHE_TTL_S": "3600",
        "PYTHONUNBUFFERED": "1",
    }

    proc = Proc(
        [sys.executable, "-m", "uvicorn", "relay.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        {**os.environ, **env},
        tmp_path / "web.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.popen.poll() is None, proc.log()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, proc.log()
        time.sleep(0.1)
    yield url
    proc.stop()


def ask(url, key, model="gpt-test"):
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_changes_are_in_force_at_the_next_request_of_another_process(web, alice, bob, upstream_factory):
    from accounts.models import ApiKey, Tenant
    from accounts.services import api_key_revoke, tenant_set_status
    from channels.models import Channel
    from channels.services import channel_set_status

    fake = upstream_factory(name="cfg", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("first", fake.url + "/v1", models=["gpt-test"])
    assert ask(web, alice.key).status_code == 200  # the other process has its table and key cached now

    # A channel (and its model, and its price) added by the command: served at once, not 404.
    call_command("add_channel", "second", "--type", "openai", "--base-url", fake.url + "/v1", "--models", "gpt-new=gpt-4o-mini", "--no-check")
    call_command("set_price", "gpt-new", "--input", "1", "--output", "2")
    answer = ask(web, alice.key, model="gpt-new")
    assert answer.status_code == 200, answer.text

    # A disabled channel is skipped by the next request.
    channel_set_status(channel=Channel.objects.get(name="second"), is_enabled=False, reason="off")
    assert ask(web, alice.key, model="gpt-new").status_code == 503

    # A revoked key is refused by the next request.
    assert ask(web, bob.key).status_code == 200
    api_key_revoke(key=ApiKey.objects.get(pk=bob.key_id))
    assert ask(web, bob.key).status_code == 401

    # A suspended tenant is refused by the next request.
    tenant_set_status(tenant=Tenant.objects.get(pk=alice.tenant.pk), status=Tenant.Status.SUSPENDED)
    answer = ask(web, alice.key)
    assert answer.status_code == 401 and "suspended" in answer.text


def test_a_tenant_suspended_in_the_admin_change_form_is_refused_by_the_next_request(web, alice, upstream_factory):
    from django.contrib.auth.models import User
    from django.test import Client

    fake = upstream_factory(name="cfg-admin", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("only", fake.url + "/v1", models=["gpt-test"])
    assert ask(web, alice.key).status_code == 200  # cached over there now
    operator = Client()
    operator.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    tenant = alice.tenant
    changed = operator.post(
        f"/admin/accounts/tenant/{tenant.pk}/change/",
        {"name": tenant.name, "group": tenant.group, "status": "suspended", "timezone": tenant.timezone or "UTC"},
    )
    assert changed.status_code == 302, changed.content[:2000]
    answer = ask(web, alice.key)
    assert answer.status_code == 401 and "suspended" in answer.text
