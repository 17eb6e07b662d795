"""Rotation with an overlap window, revocation at once, and last-used times, through the
running relay and the real openai SDK."""

from __future__ import annotations

import time

import openai
import pytest

from accounts.models import ApiKey
from accounts.services import InvalidInput, api_key_revoke, api_key_rotate
from tests.conftest import flush_logs, make_channel, make_price


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="rotation", chunks=2)
    yield fake
    fake.reset()


@pytest.fixture
def channel(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    return make_channel("rot-upstream", upstream.url + "/v1", models=[("gpt-test", "gpt-4o-mini")])


def works(relay, secret: str) -> bool:
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=secret, max_retries=0)
    try:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        return False
    return True


def test_the_old_secret_works_inside_the_window_and_not_after(relay, alice, channel):
    assert works(relay, alice.key)  # cached by the relay now
    key, new_secret = api_key_rotate(key_id=alice.key_id, overlap_s=2)
    assert key.pk == alice.key_id and new_secret != alice.key
    assert works(relay, new_secret)
    assert works(relay, alice.key)
    deadline = key.previous_expires_at.timestamp()
    time.sleep(max(0.0, deadline - time.time()) + 0.2)  # the clock passes the window's end
    assert not works(relay, alice.key)
    assert works(relay, new_secret)


def test_a_rotation_without_overlap_stops_the_old_secret_at_once(relay, alice, channel):
    assert works(relay, alice.key)
    _, new_secret = api_key_rotate(key_id=alice.key_id, overlap_s=0)
    assert not works(relay, alice.key)
    assert works(relay, new_secret)


def test_a_second_rotation_stops_the_first_secret_at_once(relay, alice, channel):
    _, second = api_key_rotate(key_id=alice.key_id, overlap_s=600)
    _, third = api_key_rotate(key_id=alice.key_id, overlap_s=600)
    assert not works(relay, alice.key)
    assert works(relay, second) and works(relay, third)


def test_revoking_stops_both_secrets_at_once(relay, alice, channel):
    _, new_secret = api_key_rotate(key_id=alice.key_id, overlap_s=600)
    assert works(relay, alice.key) and works(relay, new_secret)
    api_key_revoke(key=ApiKey.objects.get(pk=alice.key_id))
    assert not works(relay, alice.key)
    assert not works(relay, new_secret)


def test_bad_rotations_change_nothing(alice, settings):
    before = ApiKey.objects.get(pk=alice.key_id)
    for overlap_s in (-1, settings.KEY_ROTATION_MAX_OVERLAP_S + 1):
        with pytest.raises(InvalidInput):
            api_key_rotate(key_id=alice.key_id, overlap_s=overlap_s)
    api_key_revoke(key=before)
    with pytest.raises(InvalidInput, match="revoked"):
        api_key_rotate(key_id=alice.key_id, overlap_s=60)
    after = ApiKey.objects.get(pk=alice.key_id)
    assert (after.key_hash, after.previous_key_hash) == (before.key_hash, None)


def test_last_used_is_written_by_the_log_flush(relay, alice, channel):
    assert ApiKey.objects.get(pk=alice.key_id).last_used_at is None
    assert works(relay, alice.key)
    flush_logs()
    used = ApiKey.objects.get(pk=alice.key_id).last_used_at
    assert used is not None
    assert works(relay, alice.key)
    flush_logs()
    assert ApiKey.objects.get(pk=alice.key_id).last_used_at > used


def test_the_401_points_to_the_portals_keys_page(relay, channel):
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key="sk-unknown", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="TokenHub portal at /keys/"):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])


def test_the_admin_shows_a_rotated_key_without_letting_its_hashes_be_edited(admin_client, alice):
    key, _ = api_key_rotate(key_id=alice.key_id, overlap_s=600)
    page = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/")
    assert page.status_code == 200
    assert 'name="previous_key_hash"' not in page.content.decode() and 'name="key_hash"' not in page.content.decode()
