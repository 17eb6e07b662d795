"""Failover before the first byte: the backup answers, the failed channel cools down."""

import time

import openai
import pytest

from tests.conftest import flush_logs, make_channel, make_price


@pytest.fixture
def pair(upstream_factory, transactional_db):
    primary = upstream_factory(name="primary", chunks=4)
    backup = upstream_factory(name="backup", chunks=4)
    make_price("gpt-test", "1", "2")
    make_channel("primary", primary.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0)
    yield primary, backup
    primary.reset()
    backup.reset()


def ask(client, **kwargs):
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], **kwargs)


def test_a_higher_priority_is_tried_first(openai_client, pair):
    primary, backup = pair
    for _ in range(3):
        assert ask(openai_client).choices[0].message.content == primary.text
    assert len(backup.requests) == 0


@pytest.mark.parametrize("mode", ["429", "500", "slow_first_byte"])
def test_the_backup_answers_when_the_primary_fails_and_the_primary_cools_down(openai_client, pair, mode, settings):
    from channels.health.board import board
    from channels.models import Channel

    settings.UPSTREAM_FIRST_BYTE_TIMEOUT_S = 0.5
    primary, backup = pair
    primary.set_mode(mode, retry_after="30", delay_s=3)
    assert ask(openai_client).choices[0].message.content == backup.text
    cooldown = board.cooldown(Channel.objects.get(name="primary").pk)
    assert cooldown is not None
    if mode == "429":
        assert 25 < cooldown.until - time.time() <= 30  # honours Retry-After
    # while it cools, the primary is not tried again
    asked_before = len(primary.requests)
    assert ask(openai_client).choices[0].message.content == backup.text
    assert len(primary.requests) == asked_before


def test_a_channel_that_is_down_fails_over(openai_client, pair):
    from channels.models import Channel

    Channel.objects.filter(name="primary").update(base_url="http://127.0.0.1:9/v1")  # nothing listens on port 9
    from channels.table import table_invalidate

    table_invalidate()
    primary, backup = pair
    assert ask(openai_client).choices[0].message.content == backup.text


def test_a_stream_fails_over_before_its_first_byte(openai_client, pair):
    primary, backup = pair
    primary.set_mode("500")
    chunks = list(ask(openai_client, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == backup.text


def test_the_log_tells_which_attempts_were_made(openai_client, pair):
    from observability.models import RequestLog

    primary, _ = pair
    primary.set_mode("429")
    ask(openai_client)
    flush_logs()
    log = RequestLog.objects.get()
    assert [(a["channel"], a["outcome"]) for a in log.attempts] == [("primary", "rate_limited"), ("backup", "ok")]
    assert log.channel_name == "backup"


def test_a_stream_cut_midway_ends_with_an_error_event(openai_client, pair):
    primary, _ = pair
    primary.set_mode("cut", cut_after=2)
    stream = ask(openai_client, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="stream broke"):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "".join(primary.pieces[:2])
    # a channel that cuts streams cools down like one that refuses them
    from channels.models import Channel
    from tests.conftest import settle_background

    settle_background()
    _, backup = pair
    assert ask(openai_client).choices[0].message.content == backup.text
    assert Channel.objects.get(name="primary").status == "enabled"


def test_a_client_that_disconnects_cancels_the_upstream(relay, alice, pair):
    import httpx

    primary, _ = pair
    primary.set_mode("ok", chunk_delay_s=0.2, chunks=50)
    with httpx.stream(
        "POST", relay.url + "/v1/chat/completions",
        json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {alice.key}"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # one chunk is enough; leaving closes the connection
    assert primary.wait_for_disconnects(1, timeout_s=5)
