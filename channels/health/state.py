"""Health state rules: cooldowns, failure streaks and rolling outcome counts, per channel and per
(channel, model) pair. Pure rules and values; where they are kept is `stores`.

    cooldown   a channel or pair that failed is skipped until `until`. Its length is the
               upstream's Retry-After when it gave one, else base * 2^(strikes-1), capped at
               ROUTING_MAX_COOLDOWN_S. `strikes` counts cooldowns in a row: a failure while
               already cooling adds none (a burst of concurrent failures is one strike), and
               the streak is forgotten after ROUTING_STRIKE_MEMORY_S without failures.
    half-open  when a cooldown ends, the next request (or the prober) is the trial: success
               ends the streak, failure cools again for twice as long.
    scope      auth, exhausted quota and connection failures (no HTTP status) cool the whole
               channel; 429 and 5xx cool only the pair. On a channel with several upstream
               keys (channels.keys) what belongs to the key (auth, quota, 429) cools that key
               alone (`k:<channel>:<fingerprint>`); the channel counts as cooling only when
               every key is.
    stats      attempts, failures and mean latency per pair over ROUTING_HEALTH_WINDOW_S
               (a sliding estimate from two fixed buckets).
    state      down (cooling) / degraded (a streak not yet ended, or a failure rate of at
               least ROUTING_DEGRADED_FAILURE_RATE) / healthy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from django.conf import settings

from providers.base import ErrorKind, ProviderError

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"

STAT_FIELDS = ("a", "f", "e", "ls", "ln")  # attempts, failures, transient errors, latency sum (ms) and count of successes

Pair = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float  # wall-clock seconds (time.time()), comparable across processes
    reason: str
    strikes: int = 1
    kind: str = ""
    scope: str = "channel"  # or "model"
    at: float = 0.0  # when the last failure was seen

    @property
    def is_active(self) -> bool:
        return self.until > time.time()


@dataclass(frozen=True, slots=True)
class PairStats:
    attempts: float = 0.0
    failures: float = 0.0
    errors: float = 0.0
    latency_ms: float | None = None  # mean of successful attempts

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


def channel_key(channel_id: int) -> str:
    return f"c:{channel_id}"


def pair_key(channel_id: int, model: str) -> str:
    return f"p:{channel_id}:{model}"


def key_key(channel_id: int, fingerprint: str) -> str:
    """One upstream key of a multi-key channel, by its fingerprint (never the key)."""
    return f"k:{channel_id}:{fingerprint}"


KEY_OWNED = frozenset({ErrorKind.AUTH, ErrorKind.QUOTA, ErrorKind.RATE_LIMITED})  # the key's fault, not the host's


def cooldown_parse(raw: str | dict | None, scope: str) -> Cooldown | None:
    if not raw:
        return None
    data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return Cooldown(
        until=float(data["until"]),
        reason=str(data.get("reason", "")),
        strikes=int(data.get("strikes", 1)),
        kind=str(data.get("kind", "")),
        scope=scope,
        at=float(data.get("at", 0.0)),
    )




def stats_bucket(now: float) -> tuple[int, float]:
    """The current bucket and how far into it we are (0..1)."""
    window_s = settings.ROUTING_HEALTH_WINDOW_S
    return int(now // window_s), (now % window_s) / window_s


def stats_from(buckets: dict[int, list[float]], now: float) -> PairStats:
    current, progress = stats_bucket(now)
    cur = buckets.get(current) or [0.0] * 5
    prev = buckets.get(current - 1) or [0.0] * 5
    keep = 1.0 - progress  # share of the previous bucket still inside the sliding window
    a, f, e, ls, ln = (cur[i] + prev[i] * keep for i in range(5))
    return PairStats(a, f, e, (ls / ln) if ln else None)


class HealthView:
    """What one request knows about its candidates' health, read once."""

    __slots__ = ("records", "stats")

    def __init__(self, records: dict[str, Cooldown], stats: dict[Pair, PairStats]) -> None:
        self.records = records
        self.stats = stats

    def cooldown(self, channel_id: int, model: str = "") -> Cooldown | None:
        """The active cooldown of the channel or of this pair (the later-ending one)."""
        now = time.time()
        found = None
        for key in (channel_key(channel_id), pair_key(channel_id, model)):
            record = self.records.get(key)
            if record is not None and record.until > now and (found is None or record.until > found.until):
                found = record
        return found

    def key_cooldown(self, channel_id: int, fingerprint: str) -> Cooldown | None:
        record = self.records.get(key_key(channel_id, fingerprint))
        return record if record is not None and record.until > time.time() else None

    def key_streak(self, channel_id: int, fingerprint: str) -> int:
        record = self.records.get(key_key(channel_id, fingerprint))
        return record.strikes if record is not None else 0

    def streak(self, channel_id: int, model: str = "") -> int:
        records = (self.records.get(channel_key(channel_id)), self.records.get(pair_key(channel_id, model)))
        return max((r.strikes for r in records if r is not None), default=0)

    def pair(self, channel_id: int, model: str) -> PairStats:
        return self.stats.get((channel_id, model)) or PairStats()

    def state(self, channel_id: int, model: str = "") -> str:
        if self.cooldown(channel_id, model) is not None:
            return DOWN
        stats = self.pair(channel_id, model)
        if self.streak(channel_id, model) or (
            stats.attempts >= 5 and stats.failure_rate >= settings.ROUTING_DEGRADED_FAILURE_RATE
        ):
            return DEGRADED
        return HEALTHY




def cooldown_next(old: Cooldown | None, *, now: float, base_s: float, retry_after_s: float | None, max_s: float) -> tuple[float, int]:
    """(until, strikes) after one more failure. The Redis store runs the same rule in Lua."""
    strikes = old.strikes if old is not None else 0
    old_until = old.until if old is not None else 0.0
    if old_until <= now:
        strikes += 1
    if retry_after_s is not None and retry_after_s >= 0:
        seconds = retry_after_s
    else:
        seconds = min(base_s * 2 ** (strikes - 1), max_s)
    return max(now + seconds, old_until), strikes


def failure_scope(error: ProviderError) -> str:
    if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
        return "channel"
    if error.kind is ErrorKind.TRANSIENT and error.status is None:
        return "channel"  # could not connect, or no answer: the host, not the model
    return "model"


def failure_base_s(error: ProviderError) -> float:
    if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
        return settings.ROUTING_AUTH_COOLDOWN_S
    if error.kind is ErrorKind.RATE_LIMITED:
        return settings.ROUTING_DEFAULT_COOLDOWN_S
    return settings.ROUTING_TRANSIENT_COOLDOWN_S


def failure_reason(error: ProviderError) -> str:
    status = f" ({error.status})" if error.status else ""
    return f"{error.kind.value.replace('_', ' ')}{status}"
