"""Two real web processes on one PostgreSQL and Redis: an upstream key one of them cooled is
skipped by the other, which keeps serving the conversation from another key of the same
channel. Needs REDIS_URL and PostgreSQL (the scale-out pass)."""

import time

import httpx
import pytest
from django.conf import settings as django_settings

from channels.keys import key_fingerprint
from tests.conftest import make_channel, make_price

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="shared health needs REDIS_URL (the scale-out run)")

KEYS = ("sk-proc-secret-a-0001", "sk-proc-secret-b-0002", "sk-proc-secret-c-0003")



def ask(url, key, n):
    messages = [{"role": "system", "content": "brief"}, {"role": "user", "content": f"conversation {n}"}]
    return httpx.post(url + "/v1/chat/completions", json={"model": "gpt-test", "messages": messages, "max_tokens": 5},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_key_cooled_by_one_process_is_skipped_by_the_other(webs, alice, upstreams):
    from channels.health.board import board
    from channels.models import Channel

    (fake,) = upstreams("pool", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("pool", fake.url + "/v1", models=["gpt-test"], api_key=list(KEYS))
    web_a, web_b = webs
    for web in webs:  # both processes see the new channel once their tables refresh
        deadline = time.monotonic() + 15
        while (answer := ask(web, alice.key, 0)).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text

    def key_of(web, n):
        ask(web, alice.key, n)
        return fake.requests[-1].headers["authorization"].removeprefix("Bearer ")

    n = next(n for n in range(1, 100) if key_of(web_a, n) == KEYS[0])
    assert key_of(web_b, n) == KEYS[0]  # the same session sticks to the same key in every process

    fake.set_mode("ok", key_modes={KEYS[0]: "429"}, retry_after="30")
    assert ask(web_a, alice.key, n).status_code == 200  # retried on another key
    tried_a = fake.keys_seen()[KEYS[0]]
    time.sleep(django_settings.ROUTING_HEALTH_CACHE_S + 0.1)  # web-b's last health read has aged out
    answer = ask(web_b, alice.key, n)
    assert answer.status_code == 200
    assert fake.requests[-1].headers["authorization"] != f"Bearer {KEYS[0]}"
    assert fake.keys_seen()[KEYS[0]] == tried_a  # web-b never tried the key web-a cooled

    pk = Channel.objects.get(name="pool").pk
    assert set(board.key_cooldowns(pk)) == {key_fingerprint(KEYS[0])} and board.cooldown(pk) is None
