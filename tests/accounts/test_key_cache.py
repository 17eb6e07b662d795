"""A revoked key or a suspended tenant stops working in every web process at once: a second,
real web process that has the key's policy cached (TTL 300 s) refuses its very next request
after the change, with Redis and without it: the configuration version (`common.config_version`) carries
the change, and the other process syncs it before it authenticates its next request."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.conftest import make_key, make_tenant, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def web_process(django_db_setup, tmp_path_factory):
    """One second web process for the module, on the test database (each test adds its own rows)."""
    tmp_path = tmp_path_factory.mktemp("web")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "KEY_CACHE_TTL_S": "300", "EMBEDDED_JOBS": "false", "LOG_LEVEL": "WARNING"}
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    log = open(tmp_path / "web.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "relay.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "web.log").read_text()
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:  # its graceful shutdown is not under test here
        proc.kill()
        proc.wait(5)
    log.close()


@pytest.fixture
def other_process(web_process, transactional_db):
    return web_process


def _status(url: str, key: str) -> int:
    return httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10).status_code


def test_a_revoked_key_stops_working_in_another_process(other_process):
    from accounts.models import ApiKey
    from accounts.services import api_key_revoke

    actor = make_key(make_tenant("revokee"))
    assert _status(other_process, actor.key) == 200  # now cached there
    api_key_revoke(key=ApiKey.objects.get(pk=actor.key_id))
    assert _status(other_process, actor.key) == 401  # its very next request


def test_a_suspended_tenant_stops_working_in_another_process(other_process):
    from accounts.models import Tenant
    from accounts.services import tenant_set_status

    tenant = make_tenant("suspendee")
    actor = make_key(tenant)
    assert _status(other_process, actor.key) == 200
    tenant_set_status(tenant=tenant, status=Tenant.Status.SUSPENDED)
    assert _status(other_process, actor.key) == 401  # its very next request


async def test_without_redis_an_unchanged_config_version_keeps_the_cache(transactional_db, settings, alice):
    """The configuration version is what empties the cache: looking a key up twice without a change keeps its
    policy (even one the database no longer holds); a change anywhere (a new version) empties it."""
    from asgiref.sync import sync_to_async

    from accounts import keycache
    from accounts.models import ApiKey
    from accounts.selectors import key_hash

    settings.REDIS_URL = ""
    hashed = key_hash(alice.key)
    assert (await keycache.key_policy_aget(key_hash=hashed)).rpm is None
    # changed behind the cache's back: no service, so no invalidation and no new version
    await ApiKey.objects.filter(pk=alice.key_id).aupdate(rpm=7)
    assert (await keycache.key_policy_aget(key_hash=hashed)).rpm is None
    await sync_to_async(keycache.invalidate)(key_hash=key_hash("sk-another-key"))  # another key's change: a new version
    assert (await keycache.key_policy_aget(key_hash=hashed)).rpm == 7
