"""The key-policy cache has one way to be emptied across processes: the configuration version
(`common.config_version`). A policy stays cached while the version stands still, and goes at
the first request after another process moves it; on the embedded default (a file beside the
database) and with Redis alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asgiref.sync import async_to_sync
from django.conf import settings

from accounts import keycache
from accounts.models import ApiKey
from accounts.selectors import key_hash
from common.config_version import config_sync
from tests.conftest import make_key, make_tenant, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]


def _next_request_sees(secret: str):
    """What the /v1 path does before it authenticates: sync the version, then look the key up."""

    async def look():
        await config_sync()
        return await keycache.key_policy_aget(key_hash=key_hash(secret))

    return async_to_sync(look)()


def _another_process_changes_the_configuration() -> None:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "DJANGO_SETTINGS_MODULE": "relay.settings"}
    env.pop("REDIS_URL", None)
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    script = "import django; django.setup()\nfrom common.config_version import config_changed\nconfig_changed()\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_cached_policy_stays_until_another_process_moves_the_configuration(transactional_db):
    actor = make_key(make_tenant("cached"), rpm=10)
    assert _next_request_sees(actor.key).rpm == 10

    ApiKey.objects.filter(pk=actor.key_id).update(rpm=7)  # behind the cache's back: no signal
    assert _next_request_sees(actor.key).rpm == 10  # the version stood still: still cached

    _another_process_changes_the_configuration()
    assert _next_request_sees(actor.key).rpm == 7


def test_a_revocation_here_empties_this_process_at_once(transactional_db):
    from accounts.services import api_key_revoke

    actor = make_key(make_tenant("revoked-here"))
    assert not _next_request_sees(actor.key).is_revoked
    api_key_revoke(key=ApiKey.objects.get(pk=actor.key_id))
    assert keycache._entries == {}
    assert _next_request_sees(actor.key).is_revoked


def test_a_rotated_secret_is_refused_at_the_next_request(transactional_db):
    """Rotation without overlap: the old secret's cached policy must not outlive the change."""
    from accounts.services import api_key_rotate

    actor = make_key(make_tenant("rotated"))
    assert _next_request_sees(actor.key) is not None
    _key, secret = api_key_rotate(key_id=actor.key_id, overlap_s=0)
    assert _next_request_sees(actor.key) is None
    assert _next_request_sees(secret) is not None
