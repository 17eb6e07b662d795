"""Health through real requests: who gets cooled, disabled, probed and re-enabled, and what
the operator and the client are told."""

import time

import pytest
from django.conf import settings as django_settings

from tests.conftest import make_channel, make_price
from tests.conftest import chat, flush_all


@pytest.fixture
def pair(upstreams, transactional_db):
    primary, backup = upstreams("primary", "backup")
    make_price("gpt-test", "1", "2")
    make_channel("primary", primary.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0)
    return primary, backup


def channel(name):
    from channels.models import Channel

    return Channel.objects.get(name=name)


def wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_one_stray_error_cools_but_never_disables(relay, alice, pair):
    primary, backup = pair
    primary.set_mode("500")
    assert chat(relay, alice.key).json()["choices"][0]["message"]["content"] == backup.text
    from channels.tasks import probes_run

    flush_all()
    probes_run()  # the error-rate sweep sees one error in one attempt
    assert channel("primary").status == "enabled"


def test_an_auth_error_disables_the_channel_with_reason_and_time(relay, alice, pair):
    from channels.models import ChannelHealth

    primary, backup = pair
    primary.set_mode("401")
    assert chat(relay, alice.key).status_code == 200  # the backup answered
    assert wait_for(lambda: channel("primary").status == "disabled")
    disabled = channel("primary")
    assert disabled.status_reason.startswith("auto: upstream refused the credential")
    assert disabled.status_changed_at is not None
    assert ChannelHealth.objects.get(channel=disabled).auto_disabled_kind == "auth"


def test_exhausted_quota_disables_and_a_successful_probe_re_enables(relay, alice, pair):
    from channels.health.board import board
    from channels.tasks import probes_run

    primary, backup = pair
    primary.set_mode("quota")
    assert chat(relay, alice.key).status_code == 200
    assert wait_for(lambda: channel("primary").status == "disabled")
    assert "balance is exhausted" in channel("primary").status_reason

    probes_run()  # still refusing: stays disabled
    assert channel("primary").status == "disabled"

    primary.set_mode("ok")
    result = probes_run()
    assert result["re_enabled"] == 1
    enabled = channel("primary")
    assert (enabled.status, enabled.status_reason) == ("enabled", "")
    assert board.cooldown(enabled.pk) is None
    from channels.table import table_invalidate

    table_invalidate()
    assert chat(relay, alice.key).json()["choices"][0]["message"]["content"] == primary.text


def test_a_high_error_rate_over_the_window_disables(relay, alice, pair, settings):
    from channels.tasks import probes_run

    settings.ROUTING_TRANSIENT_COOLDOWN_S = 0  # let every request try the primary again
    primary, _ = pair
    primary.set_mode("500")
    for _ in range(settings.ROUTING_DISABLE_MIN_ATTEMPTS - 1):
        assert chat(relay, alice.key).status_code == 200
    flush_all()
    assert probes_run()["disabled_for_error_rate"] == 0  # 4 of 4 failed, but too few to judge
    assert chat(relay, alice.key).status_code == 200
    flush_all()
    result = probes_run()
    assert result["disabled_for_error_rate"] == 1
    assert channel("primary").status_reason.startswith("auto: error rate 100% (5 of 5 attempts)")


def test_an_operator_disabled_channel_is_never_re_enabled_by_probes(relay, alice, pair):
    from channels.health.status import channel_operator_set
    from channels.tasks import probes_run

    channel_operator_set(channel=channel("primary"), is_enabled=False, reason="contract ended")
    probes_run()
    assert channel("primary").status_reason == "contract ended"


def test_a_cooling_channel_in_a_streak_is_probed_half_open_and_closed_on_success(relay, alice, pair, settings):
    from channels.health.board import board
    from channels.tasks import probes_run

    primary, _ = pair
    primary.set_mode("500")
    chat(relay, alice.key)
    pk = channel("primary").pk
    assert board.cooldown(pk) is not None
    primary.set_mode("ok")
    result = probes_run()
    assert [(r["channel"], r["ok"]) for r in result["results"]] == [("primary", True)]
    assert board.cooldown(pk) is None  # closed: traffic may return at once


def test_a_rate_limited_channel_is_left_alone_until_its_retry_after(relay, alice, pair):
    from channels.tasks import probes_run

    primary, _ = pair
    primary.set_mode("429", retry_after="30")
    chat(relay, alice.key)
    assert probes_run()["probed"] == 0
    assert len(primary.requests) == 1


def test_no_available_channel_names_the_reason_per_candidate(relay, alice, pair):
    from channels.health.board import board

    board.cool(channel("primary").pk, seconds=60, reason="maintenance")
    board.cool(channel("backup").pk, seconds=60, reason="maintenance")
    answer = chat(relay, alice.key)
    assert answer.status_code == 503
    message = answer.json()["error"]["message"]
    assert "candidate 1: cooling down for " in message and "candidate 2: cooling down for " in message
    assert "s for maintenance" in message
    assert "primary" not in message and "backup" not in message
    assert 55 <= int(answer.headers["retry-after"]) <= 60


def test_a_request_tries_each_channel_once(relay, alice, upstreams, transactional_db, settings):
    """Three channels failing: three attempts, each on a different channel, none twice."""
    fakes = upstreams("f0", "f1", "f2", chunks=1)
    make_price("gpt-test", "1", "2")
    for i, fake in enumerate(fakes):
        fake.set_mode("500")
        make_channel(f"f{i}", fake.url + "/v1", models=["gpt-test"], priority=i)
    settings.ROUTING_MAX_ATTEMPTS = 5
    answer = chat(relay, alice.key)
    assert answer.status_code == 502
    assert [len(f.requests) for f in fakes] == [1, 1, 1]


def test_the_log_explains_candidates_and_attempts(relay, alice, pair):
    from observability.models import RequestLog, RewardLog

    primary, _ = pair
    primary.set_mode("500")
    chat(relay, alice.key)
    chat(relay, alice.key)
    flush_all()
    first, second = RequestLog.objects.order_by("created_at")
    assert [(a["channel"], a["outcome"]) for a in first.attempts] == [("primary", "transient"), ("backup", "ok")]
    assert [(c["channel"], c["eligible"], c.get("rank")) for c in first.candidates] == [("primary", True, 1), ("backup", True, 2)]
    skipped = [c for c in second.candidates if not c["eligible"]]
    assert [c["channel"] for c in skipped] == ["primary"] and "cooling down for gpt-test" in skipped[0]["reason"]
    rewards = list(RewardLog.objects.filter(request_id=first.request_id).order_by("attempt").values_list("attempt", "outcome", "reward"))
    assert rewards == [(1, "transient", 0.0), (2, "ok", 1.0)]


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="counts round trips to Redis")
def test_a_request_costs_one_redis_round_trip_for_health(relay, alice, pair, settings, monkeypatch):
    """Health is read with one pipelined round trip (none when a read younger than
    ROUTING_HEALTH_CACHE_S is at hand); a success writes nothing until the periodic flush.
    Every Redis user shares the event loop's client, so the round trips counted are the ones
    that carry health's keys."""
    from redis.asyncio.connection import Connection

    from channels.health.board import board

    settings.ROUTING_HEALTH_CACHE_S = 0  # every request reads
    settings.ROUTING_HEALTH_FLUSH_S = 3600  # no flush during the count
    assert chat(relay, alice.key).status_code == 200
    prefix = board.store.prefix.encode()
    trips = []
    original = Connection.send_packed_command

    async def counting(self, command, *args, **kwargs):
        packed = b"".join(command) if isinstance(command, (list, tuple)) else bytes(command)
        if prefix in packed:
            trips.append(packed)
        return await original(self, command, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    for _ in range(20):
        assert chat(relay, alice.key).status_code == 200
    assert len(trips) == 20
    settings.ROUTING_HEALTH_CACHE_S = 60
    trips.clear()
    for _ in range(20):
        assert chat(relay, alice.key).status_code == 200
    assert len(trips) <= 1
