"""The health board itself: cooldowns with Retry-After and exponential backoff, streaks,
scopes, the sliding window. Runs on the in-process store, and on Redis when REDIS_URL is set."""

import time

import pytest

from providers.base import ErrorKind, ProviderError
from channels.health.state import DEGRADED, DOWN, HEALTHY
from channels.health.board import board


def error(kind=ErrorKind.TRANSIENT, status=500, retry_after_s=None):
    return ProviderError(kind, "boom", status=status, retry_after_s=retry_after_s)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.ROUTING_TRANSIENT_COOLDOWN_S = 2.0
    settings.ROUTING_MAX_COOLDOWN_S = 16.0
    settings.ROUTING_HEALTH_CACHE_S = 0
    board.clear()
    yield
    board.clear()


def remaining_s(channel_id, model="m"):
    cooldown = board.view(model, [channel_id], fresh=True).cooldown(channel_id, model)
    return cooldown.until - time.time() if cooldown else 0.0


def test_a_failure_cools_for_the_base_time():
    board.failed(1, "m", error())
    assert 1.5 < remaining_s(1) <= 2.001  # Redis keeps times to the millisecond


def test_each_failed_trial_doubles_the_cooldown_up_to_the_cap(clock):
    lengths = []
    for _ in range(5):
        record = board.failed(1, "m", error())
        lengths.append(round(record.until - record.at))
        # the cooldown ends; the next failure is a failed half-open trial
        clock.skip(1)
    assert lengths == [2, 4, 8, 16, 16]


@pytest.fixture
def clock(monkeypatch):
    """The one fake here: the wall clock. `clock.skip(key)` moves it past the end of that
    cooldown, keeping the streak (what time passing does), on either store."""

    class Clock:
        offset_s = 0.0

        def now(self) -> float:
            return real_time() + self.offset_s

        def skip(self, channel_id: int, model: str = "m") -> None:
            cooldown = board.view(model, [channel_id], fresh=True).cooldown(channel_id, model)
            self.offset_s += cooldown.until - self.now() + 0.01

    real_time = time.time
    fake = Clock()
    monkeypatch.setattr(time, "time", fake.now)
    return fake


def test_failures_while_already_cooling_are_one_strike():
    for _ in range(10):
        record = board.failed(1, "m", error())  # a burst of concurrent failures
    assert record.strikes == 1
    assert remaining_s(1) <= 2.001


def test_retry_after_is_honoured_as_given():
    record = board.failed(1, "m", error(ErrorKind.RATE_LIMITED, 429, retry_after_s=7))
    assert round(record.until - record.at) == 7
    assert record.scope == "model"


def test_a_success_ends_the_streak(clock):
    board.failed(1, "m", error())
    clock.skip(1)
    assert board.view("m", [1], fresh=True).state(1, "m") == DEGRADED  # recovering: the streak is on record
    board.succeeded(1, "m", latency_ms=10)
    assert board.view("m", [1], fresh=True).streak(1, "m") == 0
    record = board.failed(1, "m", error())
    assert record.strikes == 1  # back to the base cooldown


def test_connection_failures_cool_the_whole_channel_and_5xx_only_the_model():
    board.failed(1, "a", error(status=None))
    board.failed(2, "a", error(status=502))
    assert board.view("b", [1, 2], fresh=True).cooldown(1, "b") is not None  # channel-wide
    assert board.view("b", [1, 2], fresh=True).cooldown(2, "b") is None  # only model a
    assert board.view("a", [2], fresh=True).cooldown(2, "a") is not None


def test_auth_failures_cool_the_channel_for_long(settings):
    settings.ROUTING_AUTH_COOLDOWN_S = 600
    record = board.failed(1, "m", error(ErrorKind.AUTH, 401))
    assert record.scope == "channel" and 590 < record.until - time.time() <= 600.01


def test_state_follows_the_window():
    view = board.view("m", [1], fresh=True)
    assert view.state(1, "m") == HEALTHY
    for _ in range(8):
        board.succeeded(1, "m", latency_ms=100)
    board.succeeded(1, "m", latency_ms=300)
    stats = board.view("m", [1], fresh=True).pair(1, "m")
    assert stats.attempts == pytest.approx(9) and stats.failures == 0
    assert stats.latency_ms == pytest.approx(1100 / 9)
    board.failed(1, "m", error())
    assert board.view("m", [1], fresh=True).state(1, "m") == DOWN


def test_an_operator_can_cool_and_reset():
    board.cool(3, seconds=30, reason="maintenance")
    assert board.cooldown(3).reason == "maintenance"
    board.reset(3)
    assert board.cooldown(3) is None
