"""Multi-key channels through real requests (issue 14): the official SDKs against a fake OpenAI
upstream that counts requests by the key they bore and answers one key 429 or 401.

    spread       many conversations over a 3-key channel reach every key
    stickiness   one conversation, turn after turn, always reaches one key
    cooled alone a 429 on key A cools A; B and C serve, the request that hit A is retried on
                 another key with no client error; A serves again after its cooldown
    disabled     a 401 disables A alone, durably (show_channel --json); all keys 401 -> the
                 channel is auto-disabled as before; enable_channel brings the keys back
    secrets      the keys never appear in show/list output, logs, request logs or errors
"""

from __future__ import annotations

import json
import logging
import time
from io import StringIO

import anthropic
import openai
import pytest
from django.core.management import call_command

from channels.keys import key_fingerprint
from tests.conftest import flush_logs, make_channel, make_key, make_price, make_tenant

KEYS = ("sk-mk-secret-alpha-0001", "sk-mk-secret-bravo-0002", "sk-mk-secret-charlie-0003")
FPS = tuple(key_fingerprint(k) for k in KEYS)


@pytest.fixture
def pool(upstreams, transactional_db):
    """One channel of three keys in front of one fake upstream (one account's three keys)."""
    (fake,) = upstreams("pool", chunks=2)
    make_price("gpt-test", "1", "2")
    channel = make_channel("pool", fake.url + "/v1", models=["gpt-test"], api_key=list(KEYS))
    return fake, channel


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def conversation(n: int, turns: int = 1) -> list[dict]:
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": f"question number {n}"}]
    for t in range(1, turns):
        messages += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"follow-up {t}"}]
    return messages


def ask(client, messages, **extra):
    return client.chat.completions.create(model="gpt-test", messages=messages, max_tokens=5, **extra)


def last_key(fake) -> str:
    return fake.requests[-1].headers["authorization"].removeprefix("Bearer ")


def show(name="pool") -> dict:
    out = StringIO()
    call_command("show_channel", name, "--json", stdout=out)
    return json.loads(out.getvalue())


def key_of_conversation(fake, client, n: int) -> str:
    ask(client, conversation(n))
    return last_key(fake)


def test_many_conversations_reach_every_key(relay, openai_client, pool):
    fake, _ = pool
    for n in range(30):
        assert ask(openai_client, conversation(n)).choices[0].message.content == fake.text
    seen = fake.keys_seen()
    assert set(seen) == set(KEYS), seen  # each key gets about a third; all three with near certainty
    assert sum(seen.values()) == 30  # no retries: every key answered


def test_one_conversation_sticks_to_one_key_across_turns_and_streams(relay, openai_client, pool, alice):
    fake, _ = pool
    for n in range(4):
        keys = set()
        for turns in range(1, 5):
            ask(openai_client, conversation(n, turns))
            keys.add(last_key(fake))
            stream = ask(openai_client, conversation(n, turns), stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == fake.text
            keys.add(last_key(fake))
        assert len(keys) == 1, (n, keys)
    # another API key has sessions of its own: across conversations the two differ somewhere
    other = make_key(alice.tenant, name="second key")
    second = openai.OpenAI(base_url=relay.url + "/v1", api_key=other.key, max_retries=0, timeout=30)
    differs = [key_of_conversation(fake, openai_client, n) != key_of_conversation(fake, second, n) for n in range(12)]
    assert any(differs)


def test_the_anthropic_sdk_sticks_too(relay, alice, pool):
    fake, _ = pool
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0, timeout=30)
    keys = set()
    messages = [{"role": "user", "content": "tell me about keys"}]
    for turn in range(3):
        answer = client.messages.create(model="gpt-test", system="be brief", messages=messages, max_tokens=5)
        assert answer.content[0].text == fake.text
        keys.add(last_key(fake))
        messages += [{"role": "assistant", "content": answer.content[0].text}, {"role": "user", "content": f"and {turn}?"}]
    assert len(keys) == 1


def test_a_rate_limited_key_cools_alone_and_serves_again_after_its_cooldown(relay, openai_client, pool):
    from channels.health.board import board
    from observability.models import RequestLog

    fake, channel = pool
    # a conversation whose key is the first one
    n = next(n for n in range(100) if key_of_conversation(fake, openai_client, n) == KEYS[0])
    fake.set_mode("ok", key_modes={KEYS[0]: "429"}, retry_after="2")
    before = fake.keys_seen().get(KEYS[0], 0)

    answer = ask(openai_client, conversation(n, 2))  # hits A, 429, retried on another key of the same channel
    assert answer.choices[0].message.content == fake.text
    assert last_key(fake) in KEYS[1:]
    assert fake.keys_seen()[KEYS[0]] == before + 1
    flush_logs()
    attempts = RequestLog.objects.latest("id").attempts
    assert [(a["channel"], a["outcome"], a.get("key")) for a in attempts][0] == ("pool", "rate_limited", "1/3")
    assert attempts[1]["outcome"] == "ok" and attempts[1]["key"] in ("2/3", "3/3")

    # A cools alone: the channel and the other keys serve; A's sessions go elsewhere without trying A
    assert board.cooldown(channel.pk) is None
    shown = show()
    assert shown["key_count"] == 3 and shown["status"] == "enabled"
    assert [k["state"] for k in shown["keys"]] == ["cooling", "ready", "ready"]
    assert shown["keys"][0]["fingerprint"] == FPS[0] and "rate limited (429)" in shown["keys"][0]["reason"]
    for turns in range(2, 5):
        assert ask(openai_client, conversation(n, turns)).choices[0].message.content == fake.text
    for m in range(10):
        ask(openai_client, conversation(1000 + m))
    assert fake.keys_seen()[KEYS[0]] == before + 1  # not tried while cooling

    # after its cooldown A is tried again, and its session comes back to it
    fake.set_mode("ok", key_modes={})
    assert wait_for(lambda: not board.key_cooldowns(channel.pk))
    ask(openai_client, conversation(n, 5))
    assert last_key(fake) == KEYS[0]
    assert [k["state"] for k in show()["keys"]] == ["ready", "ready", "ready"]


def test_every_key_rate_limited_is_a_429_then_a_503_with_retry_after(relay, openai_client, pool):
    fake, _ = pool
    fake.set_mode("429", retry_after="20")
    with pytest.raises(openai.RateLimitError) as first:
        ask(openai_client, conversation(1))
    assert int(first.value.response.headers["retry-after"]) >= 1
    assert len(fake.requests) == 3  # each key once, within ROUTING_MAX_ATTEMPTS
    assert fake.keys_seen() == {k: 1 for k in KEYS}
    with pytest.raises(openai.InternalServerError) as second:  # 503: every key of the only channel is cooling
        ask(openai_client, conversation(2))
    assert second.value.status_code == 503
    assert "cooling down" in second.value.message and 1 <= int(second.value.response.headers["retry-after"]) <= 20
    assert len(fake.requests) == 3  # nothing sent while all keys cool
    assert [k["state"] for k in show()["keys"]] == ["cooling"] * 3 and show()["status"] == "enabled"


def test_a_refused_key_is_disabled_alone_and_all_refused_disables_the_channel(relay, openai_client, pool):
    from channels.models import Channel, ChannelHealth

    fake, channel = pool
    fake.set_mode("ok", key_modes={KEYS[1]: "401"})
    for n in range(30):  # the sessions of key B are retried on A or C: no client error
        assert ask(openai_client, conversation(n)).choices[0].message.content == fake.text
    assert wait_for(lambda: FPS[1] in (ChannelHealth.objects.get(channel=channel).disabled_keys or {}))
    assert Channel.objects.get(pk=channel.pk).status == "enabled"
    shown = show()
    assert [k["state"] for k in shown["keys"]] == ["ready", "disabled", "ready"]
    assert shown["keys"][1]["reason"].startswith("upstream refused the credential") and shown["keys"][1]["at"]
    refused = fake.keys_seen()[KEYS[1]]
    for n in range(30, 45):  # durably: not tried again (the routing table knows it)
        ask(openai_client, conversation(n))
    assert fake.keys_seen()[KEYS[1]] == refused

    # every key refused: the channel itself is disabled, as a one-key channel is
    fake.set_mode("ok", key_modes={k: "401" for k in KEYS})
    for n in range(45, 60):
        try:
            ask(openai_client, conversation(n))
        except openai.APIStatusError as error:
            assert not any(k in error.message for k in KEYS)
        if Channel.objects.get(pk=channel.pk).status == "disabled":
            break
    assert wait_for(lambda: Channel.objects.get(pk=channel.pk).status == "disabled")
    disabled = Channel.objects.get(pk=channel.pk)
    assert disabled.status_reason.startswith("auto: every upstream key was refused")
    assert ChannelHealth.objects.get(channel=disabled).auto_disabled_kind == "auth"
    assert [k["state"] for k in show()["keys"]] == ["disabled"] * 3

    # the operator's enable brings every key back
    fake.set_mode("ok", key_modes={})
    call_command("enable_channel", "pool", stdout=StringIO())
    assert [k["state"] for k in show()["keys"]] == ["ready"] * 3
    for n in range(20):
        ask(openai_client, conversation(100 + n))
    assert set(fake.keys_seen()) == set(KEYS)


def test_a_one_key_channel_still_disables_itself_on_401(relay, openai_client, upstreams):
    from channels.models import Channel, ChannelHealth

    (fake,) = upstreams("solo")
    make_price("gpt-test", "1", "2")
    channel = make_channel("solo", fake.url + "/v1", models=["gpt-test"], api_key="sk-solo-key")
    fake.set_mode("401")
    with pytest.raises(openai.APIStatusError):
        ask(openai_client, conversation(1))
    assert wait_for(lambda: Channel.objects.get(pk=channel.pk).status == "disabled")
    assert ChannelHealth.objects.get(channel=channel).disabled_keys == {}
    assert show("solo")["keys"] == [{"position": 1, "fingerprint": key_fingerprint("sk-solo-key"), "state": "ready"}]


def test_embeddings_spread_by_request(relay, openai_client, pool):
    fake, _ = pool
    for _ in range(24):
        openai_client.embeddings.create(model="gpt-test", input="the same text every time")
    assert len(fake.keys_seen()) >= 2  # no conversation: each request is its own session


def test_the_keys_never_show(relay, openai_client, pool, caplog):
    from observability.models import RequestLog

    fake, channel = pool
    caplog.set_level(logging.DEBUG)
    fake.set_mode("ok", key_modes={KEYS[0]: "429", KEYS[1]: "401"})
    errors = []
    for n in range(12):
        try:
            ask(openai_client, conversation(n))
        except openai.APIStatusError as error:
            errors.append(error.response.text)
    fake.set_mode("401")
    for n in range(3):
        try:
            ask(openai_client, conversation(50 + n))
        except openai.APIStatusError as error:
            errors.append(error.response.text)
    flush_logs()
    listed, shown = StringIO(), StringIO()
    call_command("list_channels", "--json", stdout=listed)
    call_command("show_channel", "pool", "--json", stdout=shown)
    call_command("show_channel", "pool", stdout=shown)
    logs = [(r.attempts, r.candidates, r.error_message) for r in RequestLog.objects.all()]
    seen = "\n".join([listed.getvalue(), shown.getvalue(), caplog.text, json.dumps(logs), *errors])
    assert FPS[0] in shown.getvalue()
    for key in KEYS:
        assert key not in seen
        assert key[-8:] not in seen  # not even a tail


def test_one_key_cooled_is_seen_by_every_process_through_the_shared_store(relay, openai_client, pool, settings):
    """The board's records live in Redis on the scale-out pass: a second store reading the same
    prefix (what another process holds) sees key A cooling, and nothing of the channel."""
    from channels.health.board import Board
    from channels.health.state import key_key

    fake, channel = pool
    n = next(n for n in range(100) if key_of_conversation(fake, openai_client, n) == KEYS[0])
    fake.set_mode("ok", key_modes={KEYS[0]: "429"}, retry_after="30")
    ask(openai_client, conversation(n))
    other = Board()  # a fresh board: no cached views, its own store object
    records = other.records()
    if settings.REDIS_URL:
        assert key_key(channel.pk, FPS[0]) in records and records[key_key(channel.pk, FPS[0])].scope == "key"
        assert f"c:{channel.pk}" not in records and f"p:{channel.pk}:gpt-test" not in records
    view = other.view("gpt-test", [channel.pk], upstream_keys=[(channel.pk, fp) for fp in FPS])
    if settings.REDIS_URL:
        assert view.key_cooldown(channel.pk, FPS[0]) is not None
        assert view.key_cooldown(channel.pk, FPS[1]) is None and view.cooldown(channel.pk, "gpt-test") is None


def test_a_tenant_of_another_group_is_not_told_about_keys(relay, pool, upstreams):
    """The customer's 503 names candidates in public terms: no channel names, no fingerprints."""
    fake, _ = pool
    fake.set_mode("429", retry_after="20")
    bob = make_key(make_tenant("bob"), name="bob's key")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=bob.key, max_retries=0, timeout=30)
    with pytest.raises(openai.RateLimitError):
        ask(client, conversation(1))
    with pytest.raises(openai.InternalServerError) as refused:
        ask(client, conversation(2))
    assert "pool" not in refused.value.message and not any(fp in refused.value.message for fp in FPS)
