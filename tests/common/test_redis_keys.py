"""Every key TokenHub writes to Redis, and every pub/sub channel it listens on, sits under one
namespace (`common.redis.key`): `tokenhub:<database name>:`. Two deployments, or two test runs,
sharing one Redis never read each other's limits, health or configuration versions (which carry
key invalidations too)."""

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from openai import OpenAI

from tests.conftest import make_channel, make_key, make_price, make_tenant
from tests.conftest import flush_all

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="reads what is in Redis")


def test_every_key_and_channel_is_under_the_deployments_namespace(relay, upstreams, transactional_db):
    from accounts.models import ApiKey
    from accounts.services import api_key_update
    from channels.models import Channel
    from channels.services import channel_update

    primary, backup = upstreams("primary", "backup")
    make_price("gpt-test", "1", "2")
    make_channel("primary", primary.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0)
    dana = make_key(make_tenant("dana"), rpm=100, tpm=100_000)  # rate limits: counters in Redis
    client = OpenAI(base_url=relay.url + "/v1", api_key=dana.key, max_retries=0)

    namespace = f"tokenhub:{connection.settings_dict['NAME']}:"
    store = redis.Redis.from_url(django_settings.REDIS_URL, decode_responses=True)

    primary.set_mode("500")  # a failure: a cooldown record, written at once
    assert client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}]).choices
    primary.set_mode("ok")
    flush_all()  # health counts
    version = int(store.get(namespace + "config:version") or 0)
    api_key_update(key=ApiKey.objects.get(pk=dana.key_id), rpm=99)  # a key invalidation: the version moves
    assert int(store.get(namespace + "config:version")) > version
    channel_update(channel=Channel.objects.get(name="backup"), weight=2)  # a configuration change
    assert client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}]).choices

    keys = set(store.scan_iter(count=1000))
    assert {k.split(":")[2] for k in keys} >= {"health", "rpm", "tpm", "config"}, keys
    assert [k for k in keys if not k.startswith(namespace)] == []
