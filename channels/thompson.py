"""Thompson sampling over routes, and the reward logs it learns from.

Each (channel, model) route has a Beta(alpha, beta) posterior of "this attempt succeeds".
Every upstream attempt writes a reward log (1 success, 0 the channel failed, none when the
client's request was at fault). Two sources make a web process's posterior:

    base   `ThompsonArm` rows, computed by the `thompson_refresh` job from the reward logs of
           the last ROUTING_THOMPSON_WINDOW_S, each weighted by 2^(-age / half-life), so old
           evidence fades (prior Beta(1, 1)); read by web processes every ROUTING_THOMPSON_CACHE_S
    live   what this process saw since the base was computed, counted at once, so that
           a process learns between refreshes (and without any job, in a bare run)

The mode `thompson` draws once from each route's posterior and tries the highest first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from datetime import datetime, timedelta, timezone

from django.conf import settings

from common.snapshot import Snapshot
from observability.selectors import reward_counts_by_bucket
from observability.services import reward_logs_awrite, reward_logs_write
from observability.writer import BatchWriter

from .models import Channel, ThompsonArm

log = logging.getLogger(__name__)

Pair = tuple[int, str]
LIVE_MAX = 5000  # per route; without any refresh, the live counts are a sliding window of this size


class Arms:
    def __init__(self, base: dict[Pair, tuple[float, float]], computed_at: float) -> None:
        self.base = base
        self.computed_at = computed_at  # epoch seconds; live outcomes after it are added

    def posterior(self, channel_id: int, model: str) -> tuple[float, float]:
        alpha, beta = self.base.get((channel_id, model), (1.0, 1.0))
        successes, failures = live.counts((channel_id, model))
        return alpha + successes, beta + failures


class LiveCounts:
    """Outcomes this process saw, newest last, with running sums (O(1) per update)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[Pair, deque] = {}
        self._sums: dict[Pair, list[int]] = {}

    def add(self, pair: Pair, *, is_success: bool, at: float) -> None:
        with self._lock:
            seen = self._seen.setdefault(pair, deque())
            sums = self._sums.setdefault(pair, [0, 0])
            seen.append((at, is_success))
            sums[0 if is_success else 1] += 1
            if len(seen) > LIVE_MAX:
                _, old = seen.popleft()
                sums[0 if old else 1] -= 1

    def counts(self, pair: Pair) -> tuple[int, int]:
        sums = self._sums.get(pair)
        return (sums[0], sums[1]) if sums else (0, 0)

    def drop_before(self, at: float) -> None:
        """The base now includes everything up to `at`."""
        with self._lock:
            for pair, seen in self._seen.items():
                sums = self._sums[pair]
                while seen and seen[0][0] <= at:
                    _, old = seen.popleft()
                    sums[0 if old else 1] -= 1

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self._sums.clear()


live = LiveCounts()
def arms_load() -> Arms:
    base, newest = {}, 0.0
    for arm in ThompsonArm.objects.all().only("channel_id", "model", "alpha", "beta", "computed_at"):
        base[(arm.channel_id, arm.model)] = (arm.alpha, arm.beta)
        newest = max(newest, arm.computed_at.timestamp())
    return Arms(base, newest)


def _drop_counted(arms: Arms) -> None:
    """Live outcomes up to the arms' computation are in the arms now."""
    if arms.computed_at:
        live.drop_before(arms.computed_at)


_arms: Snapshot[Arms] = Snapshot(
    arms_load, ttl_s=lambda: settings.ROUTING_THOMPSON_CACHE_S, name="Thompson arms", on_load=_drop_counted
)


def arms_get() -> Arms:
    return _arms.get()


async def arms_aget() -> Arms:
    return await _arms.aget()


def forget() -> None:
    """Drop the base and the live counts (tests)."""
    _arms.forget()
    live.clear()


# --- reward logs ----------------------------------------------------------------------------


def _write_rewards(batch: list[dict]) -> None:
    reward_logs_write(entries=batch)


async def _awrite_rewards(batch: list[dict]) -> None:
    await reward_logs_awrite(entries=batch)


reward_logs = BatchWriter(
    _write_rewards, awrite=_awrite_rewards, name="reward-log-writer", flush_s=settings.REQUEST_LOG_FLUSH_S
)


def reward_observe(*, seen, route, outcome: str, reward: float | None, latency_ms: float) -> None:
    """One attempt's reward: logged (batched, off the hot path) and counted live. `seen` is what
    the journey told of the request (channels.health.observe.AttemptSeen)."""
    now = time.time()
    if reward is not None:
        live.add((route.channel_id, seen.model), is_success=reward >= 0.5, at=now)
    reward_logs.submit(
        {
            "request_id": seen.request_id,
            "attempt": seen.attempt,
            "channel_id": route.channel_id,
            "model": seen.model,
            "mode": seen.mode,
            "outcome": outcome,
            "reward": reward,
            "latency_ms": max(0, round(latency_ms)),
            "created_at": datetime.fromtimestamp(now, tz=timezone.utc),
        }
    )


def reward_logs_flush() -> int:
    return reward_logs.flush()


# --- the refresh job --------------------------------------------------------------------------


def arms_refresh(*, now: datetime | None = None) -> dict:
    """Recompute every route's posterior from reward logs; returns counts for the job's log.

    Rewards are counted per minute (last two hours) or per hour (before) in the database,
    portable to SQLite and PostgreSQL; each bucket is weighted by its age at its middle."""
    now = now or datetime.now(timezone.utc)
    # Rewards still in some process's write queue are not in the table yet: stop a little
    # before now, and let processes keep their live counts after that point.
    upto = now - timedelta(seconds=settings.REQUEST_LOG_FLUSH_S * 4 + 1)
    since = upto - timedelta(seconds=settings.ROUTING_THOMPSON_WINDOW_S)
    half_life_s = settings.ROUTING_THOMPSON_HALF_LIFE_S
    # Minute buckets for the recent past (where weights change fastest), hours before that.
    recent = max(since, upto - timedelta(hours=2))
    buckets = [
        (reward_counts_by_bucket(since=recent, until=upto, bucket="minute"), timedelta(minutes=1)),
        (reward_counts_by_bucket(since=since, until=recent, bucket="hour"), timedelta(hours=1)),
    ]
    sums: dict[Pair, list[float]] = {}
    for rows, width in buckets:
        for row in rows:
            start = max(row["bucket"], since)
            middle = start + (min(row["bucket"] + width, upto) - start) / 2
            weight = math.pow(2.0, -(upto - middle).total_seconds() / half_life_s)
            entry = sums.setdefault((row["channel_id"], row["model"]), [0.0, 0.0, 0])
            entry[0] += weight * row["successes"]
            entry[1] += weight * (row["total"] - row["successes"])
            entry[2] += row["total"]
    existing = set(Channel.objects.filter(pk__in={c for c, _ in sums}).values_list("pk", flat=True))
    written = 0
    for (channel_id, model), (successes, failures, attempts) in sums.items():
        if channel_id not in existing:
            continue
        ThompsonArm.objects.update_or_create(
            channel_id=channel_id,
            model=model,
            defaults={"alpha": 1.0 + successes, "beta": 1.0 + failures, "attempts": attempts, "computed_at": upto},
        )
        written += 1
    # routes with no evidence left in the window go back to the prior
    reset = ThompsonArm.objects.exclude(computed_at=upto).update(alpha=1.0, beta=1.0, attempts=0, computed_at=upto)
    return {"arms": written, "reset": reset, "upto": upto.isoformat()}
