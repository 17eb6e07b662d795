"""Channel health: cooldowns, failure streaks and rolling outcome counts, per channel and per
(channel, model) pair.

    cooldown   a channel or pair that failed is skipped until `until`. Its length is the
               upstream's Retry-After when it gave one, else base * 2^(strikes-1), capped at
               ROUTING_MAX_COOLDOWN_S. `strikes` counts cooldowns in a row: a failure while
               already cooling adds none (a burst of concurrent failures is one strike), and
               the streak is forgotten after ROUTING_STRIKE_MEMORY_S without failures.
    half-open  when a cooldown ends, the next request (or the prober) is the trial: success
               ends the streak, failure cools again for twice as long.
    scope      auth, exhausted quota and connection failures (no HTTP status) cool the whole
               channel; 429 and 5xx cool only the pair.
    stats      attempts, failures and mean latency per pair over ROUTING_HEALTH_WINDOW_S
               (a sliding estimate from two fixed buckets).
    state      down (cooling) / degraded (a streak not yet ended, or a failure rate of at
               least ROUTING_DEGRADED_FAILURE_RATE) / healthy.

Disabling a channel is a different, durable thing (its `status` in the database): auth and
exhausted-balance errors disable at once, with the reason and time; a high error rate over a
window disables it from the health sweep (`channels.tasks`), never one stray error. The prober
re-enables what TokenHub disabled when a trial request succeeds.

Where the state lives: process memory by default; Redis when REDIS_URL is set, shared by
every web process and worker. The hot path reads it once per request (`aview`: one pipelined
round trip, reused for ROUTING_HEALTH_CACHE_S); successes are counted locally and flushed every
ROUTING_HEALTH_FLUSH_S; a failure is written at once (one Lua call), so every process stops
sending to that channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from providers.base import ErrorKind, ProviderError

from . import upstream

log = logging.getLogger(__name__)

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"


def key_prefix() -> str:
    """Redis keys are namespaced by database: processes of one deployment (one database)
    share health; two deployments, or two test runs, on one Redis do not mix."""
    from django.db import connection

    return f"tokenhub:{connection.settings_dict['NAME']}:health:"
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


def _record_to_cooldown(raw: str | dict | None, scope: str) -> Cooldown | None:
    if not raw:
        return None
    data = json.loads(raw) if isinstance(raw, str) else raw
    return Cooldown(
        until=float(data["until"]),
        reason=str(data.get("reason", "")),
        strikes=int(data.get("strikes", 1)),
        kind=str(data.get("kind", "")),
        scope=scope,
        at=float(data.get("at", 0.0)),
    )


def _bucket(now: float) -> tuple[int, float]:
    """The current bucket and how far into it we are (0..1)."""
    window_s = settings.ROUTING_HEALTH_WINDOW_S
    return int(now // window_s), (now % window_s) / window_s


def _stats_from(buckets: dict[int, list[float]], now: float) -> PairStats:
    current, progress = _bucket(now)
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


# --- stores ----------------------------------------------------------------------------------


def _next_record(old: Cooldown | None, *, now: float, base_s: float, retry_after_s: float | None, max_s: float) -> tuple[float, int]:
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


class LocalStore:
    """Health in this process's memory: the embedded default."""

    is_shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[Cooldown, float]] = {}  # key -> (record, expires_at)
        self._stats: dict[Pair, dict[int, list[float]]] = {}

    def read(self, keys: list[str], pairs: list[Pair], now: float) -> tuple[dict[str, Cooldown], dict[Pair, PairStats]]:
        with self._lock:
            records = {}
            for key in keys:
                entry = self._records.get(key)
                if entry is None:
                    continue
                if entry[1] <= now:
                    self._records.pop(key, None)
                    continue
                records[key] = entry[0]
            stats = {pair: _stats_from(self._stats[pair], now) for pair in pairs if pair in self._stats}
        return records, stats

    def cool(self, key: str, *, now: float, base_s: float, retry_after_s: float | None, max_s: float, reason: str, kind: str) -> Cooldown:
        with self._lock:
            entry = self._records.get(key)
            old = entry[0] if entry is not None and entry[1] > now else None
            until, strikes = _next_record(old, now=now, base_s=base_s, retry_after_s=retry_after_s, max_s=max_s)
            record = Cooldown(until, reason, strikes, kind, "channel" if key.startswith("c:") else "model", now)
            self._records[key] = (record, until + settings.ROUTING_STRIKE_MEMORY_S)
            return record

    def add(self, increments: dict[Pair, list[float]], now: float) -> None:
        current, _ = _bucket(now)
        with self._lock:
            for pair, values in increments.items():
                buckets = self._stats.setdefault(pair, {})
                row = buckets.setdefault(current, [0.0] * 5)
                for i, v in enumerate(values):
                    row[i] += v
                for old in [b for b in buckets if b < current - 1]:
                    del buckets[old]

    def reset(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def all_records(self) -> dict[str, Cooldown]:
        now = time.time()
        with self._lock:
            return {k: r for k, (r, expires) in self._records.items() if expires > now}

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._stats.clear()


# KEYS[1] record; ARGV: now, base_s, retry_after_s (-1: none), max_s, reason, kind, memory_s, scope
_COOL_LUA = """
local raw = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
local strikes, old_until = 0, 0
if raw then
  local old = cjson.decode(raw)
  strikes = tonumber(old['strikes']) or 0
  old_until = tonumber(old['until']) or 0
end
if old_until <= now then strikes = strikes + 1 end
local seconds = tonumber(ARGV[3])
if seconds < 0 then
  seconds = math.min(tonumber(ARGV[2]) * math.pow(2, strikes - 1), tonumber(ARGV[4]))
end
local new_until = math.max(now + seconds, old_until)
local record = cjson.encode({['until'] = string.format('%.3f', new_until), reason = ARGV[5], kind = ARGV[6],
  strikes = strikes, at = string.format('%.3f', now)})
redis.call('SET', KEYS[1], record, 'PX', math.floor((new_until - now + tonumber(ARGV[7])) * 1000))
return record
"""


class RedisStore:
    """Health in Redis, shared by every process. Sync calls for jobs, admin and commands;
    async calls (one client per event loop) for the hot path."""

    is_shared = True

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._url = url
        self.prefix = prefix
        self._sync = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self._sync_cool = self._sync.register_script(_COOL_LUA)
        self._async: dict[int, tuple[object, object]] = {}

    def _aclient(self):
        from redis.asyncio import Redis

        loop_id = id(asyncio.get_running_loop())
        pair = self._async.get(loop_id)
        if pair is None:
            client = Redis.from_url(self._url, decode_responses=True, socket_timeout=5)
            pair = self._async[loop_id] = (client, client.register_script(_COOL_LUA))
        return pair

    @staticmethod
    def _fields(now: float) -> tuple[list[str], int]:
        current, _ = _bucket(now)
        return [f"{name}:{b}" for b in (current, current - 1) for name in STAT_FIELDS], current

    @staticmethod
    def _parse(keys, pairs, raw_records, raw_stats, now):
        records = {}
        for key, raw in zip(keys, raw_records):
            record = _record_to_cooldown(raw, "channel" if key.startswith("c:") else "model")
            if record is not None:
                records[key] = record
        current, _ = _bucket(now)
        stats = {}
        for pair, values in zip(pairs, raw_stats):
            if not any(values):
                continue
            numbers = [float(v) if v else 0.0 for v in values]
            stats[pair] = _stats_from({current: numbers[:5], current - 1: numbers[5:]}, now)
        return records, stats

    def _stat_key(self, pair: Pair) -> str:
        return f"{self.prefix}s:{pair[0]}:{pair[1]}"

    def read(self, keys, pairs, now):
        fields, _ = self._fields(now)
        pipe = self._sync.pipeline(transaction=False)
        pipe.mget([self.prefix + k for k in keys] or [self.prefix + "none"])
        for pair in pairs:
            pipe.hmget(self._stat_key(pair), fields)
        results = pipe.execute()
        return self._parse(keys, pairs, results[0], results[1:], now)

    async def aread(self, keys, pairs, now):
        client, _ = self._aclient()
        fields, _ = self._fields(now)
        pipe = client.pipeline(transaction=False)
        pipe.mget([self.prefix + k for k in keys] or [self.prefix + "none"])
        for pair in pairs:
            pipe.hmget(self._stat_key(pair), fields)
        results = await pipe.execute()
        return self._parse(keys, pairs, results[0], results[1:], now)

    def _cool_args(self, now, base_s, retry_after_s, max_s, reason, kind, key):
        scope = "channel" if key.startswith("c:") else "model"
        args = [f"{now:.3f}", base_s, -1 if retry_after_s is None else retry_after_s, max_s, reason, kind, settings.ROUTING_STRIKE_MEMORY_S]
        return scope, args

    def cool(self, key, *, now, base_s, retry_after_s, max_s, reason, kind):
        scope, args = self._cool_args(now, base_s, retry_after_s, max_s, reason, kind, key)
        return _record_to_cooldown(self._sync_cool(keys=[self.prefix + key], args=args), scope)

    async def acool(self, key, *, now, base_s, retry_after_s, max_s, reason, kind):
        _, script = self._aclient()
        scope, args = self._cool_args(now, base_s, retry_after_s, max_s, reason, kind, key)
        return _record_to_cooldown(await script(keys=[self.prefix + key], args=args), scope)

    def _add_to(self, pipe, increments, now):
        current, _ = _bucket(now)
        expire_s = int(settings.ROUTING_HEALTH_WINDOW_S * 3) + 1
        for pair, values in increments.items():
            key = self._stat_key(pair)
            for name, value in zip(STAT_FIELDS, values):
                if value:
                    pipe.hincrbyfloat(key, f"{name}:{current}", value)
            pipe.hdel(key, *[f"{name}:{current - 2}" for name in STAT_FIELDS])  # the bucket that slid out
            pipe.expire(key, expire_s)

    def add(self, increments, now):
        pipe = self._sync.pipeline(transaction=False)
        self._add_to(pipe, increments, now)
        pipe.execute()

    async def aadd(self, increments, now):
        client, _ = self._aclient()
        pipe = client.pipeline(transaction=False)
        self._add_to(pipe, increments, now)
        await pipe.execute()

    def reset(self, keys):
        if keys:
            self._sync.delete(*[self.prefix + k for k in keys])

    async def areset(self, keys):
        if keys:
            client, _ = self._aclient()
            await client.delete(*[self.prefix + k for k in keys])

    def all_records(self) -> dict[str, Cooldown]:
        found = {}
        keys = [k for k in self._sync.scan_iter(match=self.prefix + "[cp]:*", count=500)]
        if keys:
            for key, raw in zip(keys, self._sync.mget(keys)):
                short = key[len(self.prefix):]
                record = _record_to_cooldown(raw, "channel" if short.startswith("c:") else "model")
                if record is not None:
                    found[short] = record
        return found

    def clear(self) -> None:
        keys = list(self._sync.scan_iter(match=self.prefix + "*", count=500))
        if keys:
            self._sync.delete(*keys)


# --- the board: what the router and the jobs use ---------------------------------------------


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


class Board:
    def __init__(self) -> None:
        self._store: LocalStore | RedisStore | None = None
        self._store_url: str | None = None
        self._views: dict[tuple, tuple[float, HealthView]] = {}
        self._pending: dict[Pair, list[float]] = {}
        self._pending_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._flushing = False

    @property
    def store(self) -> LocalStore | RedisStore:
        where = (settings.REDIS_URL or "", key_prefix())
        if self._store is None or self._store_url != where:
            self._store = RedisStore(*where) if where[0] else LocalStore()
            self._store_url = where
        return self._store

    # reading

    @staticmethod
    def _keys(model: str, channel_ids) -> tuple[list[str], list[Pair]]:
        ids = list(dict.fromkeys(channel_ids))
        return [channel_key(c) for c in ids] + [pair_key(c, model) for c in ids], [(c, model) for c in ids]

    def _cached(self, cache_key) -> HealthView | None:
        hit = self._views.get(cache_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def _remember(self, cache_key, records, stats) -> HealthView:
        view = HealthView(records, self._with_pending(stats))
        if settings.ROUTING_HEALTH_CACHE_S > 0:
            if len(self._views) > 10_000:
                self._views.clear()
            self._views[cache_key] = (time.monotonic() + settings.ROUTING_HEALTH_CACHE_S, view)
        return view

    def _with_pending(self, stats: dict[Pair, PairStats]) -> dict[Pair, PairStats]:
        """Add what this process saw but has not flushed yet: it knows its own recent outcomes."""
        if not self._pending:
            return stats
        merged = dict(stats)
        with self._pending_lock:
            for pair, (a, f, e, latency_sum, successes) in self._pending.items():
                base = merged.get(pair) or PairStats()
                base_successes = max(base.attempts - base.failures, 0.0) if base.latency_ms is not None else 0.0
                total = base_successes + successes
                latency = ((base.latency_ms or 0.0) * base_successes + latency_sum) / total if total else None
                merged[pair] = PairStats(base.attempts + a, base.failures + f, base.errors + e, latency)
        return merged

    async def aview(self, model: str, channel_ids) -> HealthView:
        """The health of these channels for `model`: one round trip to Redis at most."""
        keys, pairs = self._keys(model, channel_ids)
        cache_key = (model, tuple(pairs))
        view = self._cached(cache_key)
        if view is not None:
            return view
        store = self.store
        now = time.time()
        if store.is_shared:
            records, stats = await store.aread(keys, pairs, now)
        else:
            records, stats = store.read(keys, pairs, now)
        return self._remember(cache_key, records, stats)

    def view(self, model: str, channel_ids, *, fresh: bool = False) -> HealthView:
        keys, pairs = self._keys(model, channel_ids)
        cache_key = (model, tuple(pairs))
        if not fresh:
            view = self._cached(cache_key)
            if view is not None:
                return view
        records, stats = self.store.read(keys, pairs, time.time())
        return self._remember(cache_key, records, stats)

    def cooldown(self, channel_id: int, model: str | None = None) -> Cooldown | None:
        """The channel's active cooldown; with no model, the latest-ending of the channel's
        own and its pairs' (for operators and tests)."""
        if model is not None:
            return self.view(model, [channel_id], fresh=True).cooldown(channel_id, model)
        now = time.time()
        prefix_pair = f"p:{channel_id}:"
        found = None
        for key, record in self.store.all_records().items():
            if (key == channel_key(channel_id) or key.startswith(prefix_pair)) and record.until > now:
                if found is None or record.until > found.until:
                    found = record
        return found

    def records(self) -> dict[str, Cooldown]:
        """Every cooldown record still remembered (active or in its strike memory)."""
        return self.store.all_records()

    # writing

    def _count(self, channel_id: int, model: str, *, failed: bool, is_error: bool, latency_ms: float) -> None:
        values = [1.0, 1.0 if failed else 0.0, 1.0 if is_error else 0.0, 0.0 if failed else latency_ms, 0.0 if failed else 1.0]
        if not self.store.is_shared:
            self.store.add({(channel_id, model): values}, time.time())
            return
        with self._pending_lock:
            row = self._pending.setdefault((channel_id, model), [0.0] * 5)
            for i, v in enumerate(values):
                row[i] += v

    def _take_pending(self) -> dict[Pair, list[float]]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        self._last_flush = time.monotonic()
        return pending

    def _forget_views(self) -> None:
        self._views.clear()

    async def afailed(self, channel_id: int, model: str, error: ProviderError, *, latency_ms: float = 0.0) -> Cooldown:
        self._count(channel_id, model, failed=True, is_error=error.kind is ErrorKind.TRANSIENT, latency_ms=latency_ms)
        key, args = self._cool_args(channel_id, model, error)
        store = self.store
        cooldown = await store.acool(key, **args) if store.is_shared else store.cool(key, **args)
        self._forget_views()
        self._maybe_flush()
        return cooldown

    def failed(self, channel_id: int, model: str, error: ProviderError, *, latency_ms: float = 0.0) -> Cooldown:
        self._count(channel_id, model, failed=True, is_error=error.kind is ErrorKind.TRANSIENT, latency_ms=latency_ms)
        key, args = self._cool_args(channel_id, model, error)
        cooldown = self.store.cool(key, **args)
        self._forget_views()
        self.flush()
        return cooldown

    @staticmethod
    def _cool_args(channel_id: int, model: str, error: ProviderError):
        key = channel_key(channel_id) if failure_scope(error) == "channel" else pair_key(channel_id, model)
        retry_after = error.retry_after_s if error.kind is ErrorKind.RATE_LIMITED and error.retry_after_s else None
        return key, {
            "now": time.time(),
            "base_s": failure_base_s(error),
            "retry_after_s": retry_after,
            "max_s": max(settings.ROUTING_MAX_COOLDOWN_S, failure_base_s(error)),
            "reason": failure_reason(error),
            "kind": error.kind.value,
        }

    async def asucceeded(self, channel_id: int, model: str, *, latency_ms: float, view: HealthView | None = None) -> None:
        """A success ends a streak (half-open trial passed). Counted locally; Redis is touched
        only when a streak was on record."""
        self._count(channel_id, model, failed=False, is_error=False, latency_ms=latency_ms)
        if view is None and not self.store.is_shared:
            view = self.view(model, [channel_id], fresh=True)  # memory: free to look
        if view is not None and view.streak(channel_id, model):
            keys = [channel_key(channel_id), pair_key(channel_id, model)]
            store = self.store
            await store.areset(keys) if store.is_shared else store.reset(keys)
            self._forget_views()
        self._maybe_flush()

    def succeeded(self, channel_id: int, model: str, *, latency_ms: float) -> None:
        self._count(channel_id, model, failed=False, is_error=False, latency_ms=latency_ms)
        self.reset(channel_id, model)
        self.flush()

    def cool(self, channel_id: int, *, seconds: float, reason: str, model: str | None = None) -> Cooldown:
        """Cool a channel (or pair) for exactly `seconds` (operators, tests)."""
        key = channel_key(channel_id) if model is None else pair_key(channel_id, model)
        record = self.store.cool(key, now=time.time(), base_s=seconds, retry_after_s=seconds, max_s=seconds, reason=reason, kind="manual")
        self._forget_views()
        return record

    def reset(self, channel_id: int, model: str | None = None) -> None:
        """End the cooldowns and streaks of a channel (all its pairs when no model is given)."""
        if model is not None:
            keys = [channel_key(channel_id), pair_key(channel_id, model)]
        else:
            keys = [k for k in self.store.all_records() if k == channel_key(channel_id) or k.startswith(f"p:{channel_id}:")]
        self.store.reset(keys)
        self._forget_views()

    def record_success(self, channel_id: int) -> None:
        self.reset(channel_id)

    # flushing

    def _maybe_flush(self) -> None:
        if not self._pending or self._flushing:
            return
        if time.monotonic() - self._last_flush < settings.ROUTING_HEALTH_FLUSH_S:
            return
        from common import background

        self._flushing = True
        background.spawn(self._aflush_then_clear_flag())

    async def _aflush_then_clear_flag(self) -> None:
        try:
            await self.aflush()
        finally:
            self._flushing = False

    async def run_flusher(self) -> None:
        """Flush this process's counts every ROUTING_HEALTH_FLUSH_S, traffic or not (started
        by the web process when the store is shared; cancelled at shutdown)."""
        while True:
            await asyncio.sleep(settings.ROUTING_HEALTH_FLUSH_S)
            if self._pending and not self._flushing:
                await self.aflush()

    async def aflush(self) -> None:
        pending = self._take_pending()
        if pending and self.store.is_shared:
            try:
                await self.store.aadd(pending, time.time())
            except Exception:
                log.warning("health stats flush to Redis failed; %d routes' counts lost", len(pending), exc_info=True)

    def flush(self) -> None:
        pending = self._take_pending()
        if pending and self.store.is_shared:
            self.store.add(pending, time.time())

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._pending_lock:
            self._pending.clear()
        self._views.clear()
        self.store.clear()


board = Board()


# --- observing attempts (called by the journey for every upstream attempt) --------------------


async def attempt_observe(*, call, route, error: ProviderError | None, latency_ms: float) -> Cooldown | None:
    """Record one attempt's outcome: health, reward log, the sampler's live counts; and disable
    the channel (in the background) when the upstream refused its credential or balance."""
    from . import thompson

    model = call.model
    if error is None:
        plan = getattr(call, "plan", None)
        await board.asucceeded(route.channel_id, model, latency_ms=latency_ms, view=plan.health if plan else None)
        thompson.reward_observe(call=call, route=route, outcome="ok", reward=1.0, latency_ms=latency_ms)
        return None
    if not error.kind.counts_against_channel:
        thompson.reward_observe(call=call, route=route, outcome=error.kind.value, reward=None, latency_ms=latency_ms)
        return None
    cooldown = await board.afailed(route.channel_id, model, error, latency_ms=latency_ms)
    thompson.reward_observe(call=call, route=route, outcome=error.kind.value, reward=0.0, latency_ms=latency_ms)
    if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
        from asgiref.sync import sync_to_async

        from common import background

        kind = "auth" if error.kind is ErrorKind.AUTH else "quota"
        reason = f"upstream {'refused the credential' if kind == 'auth' else 'says the balance is exhausted'}: {failure_reason(error)}"
        background.spawn(sync_to_async(channel_auto_disable, thread_sensitive=False)(channel_id=route.channel_id, kind=kind, reason=reason))
    return cooldown


# --- durable state: auto-disable and re-enable ------------------------------------------------


def channel_auto_disable(*, channel_id: int, kind: str, reason: str) -> bool:
    """Disable a channel on TokenHub's own judgement, with reason and time. Does nothing to a
    channel an operator disabled. Returns whether it changed anything."""
    from django.db import transaction
    from django.utils import timezone

    from billing.alerts import operator_alert_queue

    from .models import Channel, ChannelHealth

    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            return False
        health, _ = ChannelHealth.objects.get_or_create(channel=channel)
        if channel.status == Channel.Status.DISABLED:
            return False
        channel.status = Channel.Status.DISABLED
        channel.status_reason = f"auto: {reason}"[:300]
        channel.status_changed_at = timezone.now()
        channel.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
        health.auto_disabled_kind = kind
        health.save(update_fields=["auto_disabled_kind", "updated_at"])
        operator_alert_queue(
            kind="channel_disabled",
            subject=f"Channel {channel.name} was disabled automatically: {reason}"[:300],
            payload={"channel_id": channel.pk, "channel": channel.name, "reason": kind},
        )
    log.warning("channel %s disabled automatically: %s", channel.name, reason)
    return True


def channel_auto_enable(*, channel_id: int, why: str, kinds: tuple[str, ...] | None = None) -> bool:
    """Re-enable a channel TokenHub disabled (of these kinds), and forget its cooldowns."""
    from django.db import transaction
    from django.utils import timezone

    from .models import Channel, ChannelHealth

    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        health = ChannelHealth.objects.filter(channel_id=channel_id).first()
        if channel is None or health is None or not health.auto_disabled_kind:
            return False
        if kinds is not None and health.auto_disabled_kind not in kinds:
            return False
        if channel.status == Channel.Status.DISABLED:
            channel.status = Channel.Status.ENABLED
            channel.status_reason = ""
            channel.status_changed_at = timezone.now()
            channel.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
        health.auto_disabled_kind = ""
        health.save(update_fields=["auto_disabled_kind", "updated_at"])
    board.reset(channel_id)
    log.warning("channel %s re-enabled automatically: %s", channel.name, why)
    return True


def channel_operator_set(*, channel, is_enabled: bool, reason: str = ""):
    """An operator's enable/disable: TokenHub's own judgement no longer applies to it."""
    from .models import ChannelHealth
    from .services import channel_set_status

    channel = channel_set_status(channel=channel, is_enabled=is_enabled, reason=reason)
    ChannelHealth.objects.update_or_create(channel=channel, defaults={"auto_disabled_kind": ""})
    if is_enabled:
        board.reset(channel.pk)
    return channel


# --- active probes: a tiny real request --------------------------------------------------------

PROBE_MESSAGES = [{"role": "user", "content": "Reply with one word: ok"}]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    channel_id: int
    channel: str
    model: str
    is_ok: bool
    latency_ms: int
    error: str = ""
    kind: str = ""  # the error kind when it failed
    re_enabled: bool = False
    disabled: bool = False

    def as_dict(self) -> dict:
        return {
            "channel_id": self.channel_id, "channel": self.channel, "model": self.model, "ok": self.is_ok,
            "latency_ms": self.latency_ms, "error": self.error, "kind": self.kind,
            "re_enabled": self.re_enabled, "disabled": self.disabled,
        }


async def _probe_send(provider_type: str, target, timeout_s: float) -> None:
    from providers.base import Timeouts
    from providers.registry import get_adapter

    request = {"model": target.upstream_model, "messages": PROBE_MESSAGES, "max_tokens": 1, "stream": False}
    async with upstream.client_make() as client:
        await get_adapter(provider_type).chat(client, target, request, Timeouts(min(5.0, timeout_s), timeout_s, timeout_s))


def channel_probe(*, channel_id: int, model: str | None = None, record: bool = True) -> ProbeResult:
    """Send one tiny chat request through the channel (a half-open trial). With `record`,
    the outcome counts: success ends cooldowns and re-enables a channel TokenHub disabled
    (except for an empty balance, which the balance monitor decides); failure backs off
    further, and an auth or quota refusal disables it."""
    import asyncio

    from django.utils import timezone

    from providers.base import Target
    from vault.crypto import SecretUnreadable
    from vault.services import secret_unseal

    from .models import Channel, ChannelHealth, ChannelModel
    from .netguard import base_url_problem

    channel = Channel.objects.get(pk=channel_id)
    links = ChannelModel.objects.filter(channel=channel).select_related("model").order_by("-is_enabled", "id")
    link = next((cm for cm in links if model is None or cm.model.public_id == model), None)
    if link is None:
        return ProbeResult(channel.pk, channel.name, model or "", False, 0, "the channel serves no such model", "config")
    public_id = link.model.public_id
    began = time.perf_counter()
    error: ProviderError | None = None
    problem = ""
    try:
        api_key = secret_unseal(token=channel.credential) or None
    except SecretUnreadable as exc:
        api_key, problem = None, str(exc)
    if not problem and channel.provider_type != "simulated":
        problem = base_url_problem(channel.base_url) or ""
    if not problem:
        target = Target(channel.base_url.rstrip("/"), link.upstream_name, api_key, dict(channel.options or {}))
        try:
            asyncio.run(_probe_send(channel.provider_type, target, settings.ROUTING_PROBE_TIMEOUT_S))
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not stop the other probes
            log.exception("probe of channel %s raised", channel.name)
            error = ProviderError(ErrorKind.TRANSIENT, f"probe failed: {type(exc).__name__}")
    latency_ms = round((time.perf_counter() - began) * 1000)
    if problem:
        return ProbeResult(channel.pk, channel.name, public_id, False, latency_ms, problem, "config")
    # A refusal of the request itself (400) still proves the upstream answers and the key works.
    is_ok = error is None or not error.kind.is_retryable
    result = ProbeResult(channel.pk, channel.name, public_id, is_ok, latency_ms, "" if is_ok else error.message[:300], "" if is_ok else error.kind.value)
    if not record:
        return result
    health, _ = ChannelHealth.objects.get_or_create(channel=channel)
    health.last_probe_at = timezone.now()
    health.last_probe_ok = is_ok
    health.last_probe_latency_ms = latency_ms
    health.last_probe_error = result.error
    health.probe_failures = 0 if is_ok else health.probe_failures + 1
    health.save()
    re_enabled = disabled = False
    if is_ok:
        board.succeeded(channel.pk, public_id, latency_ms=latency_ms)
        if health.auto_disabled_kind and health.auto_disabled_kind != "balance":
            re_enabled = channel_auto_enable(channel_id=channel.pk, why=f"probe of {public_id} succeeded in {latency_ms} ms")
    else:
        board.failed(channel.pk, public_id, error, latency_ms=latency_ms)
        if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
            kind = "auth" if error.kind is ErrorKind.AUTH else "quota"
            disabled = channel_auto_disable(channel_id=channel.pk, kind=kind, reason=f"probe: {failure_reason(error)}")
    return dataclasses.replace(result, re_enabled=re_enabled, disabled=disabled)


def channels_to_probe(*, limit: int = 50) -> list[tuple[int, str | None]]:
    """(channel id, model or None): channels TokenHub disabled (not for an empty balance), and
    channels or routes in a failure streak, except while a rate limit's Retry-After runs."""
    from .models import Channel, ChannelHealth

    wanted: dict[tuple[int, str | None], None] = {}
    for channel_id in ChannelHealth.objects.exclude(auto_disabled_kind__in=["", "balance"]).filter(
        channel__status=Channel.Status.DISABLED
    ).values_list("channel_id", flat=True):
        wanted[(channel_id, None)] = None
    now = time.time()
    enabled = set(Channel.objects.filter(status=Channel.Status.ENABLED).values_list("pk", flat=True))
    for key, record in board.records().items():
        if record.kind == ErrorKind.RATE_LIMITED.value and record.until > now:
            continue  # the upstream told us when to come back
        if record.kind == "manual":
            continue
        parts = key.split(":", 2)
        channel_id = int(parts[1])
        if channel_id not in enabled:
            continue
        if record.until <= now and record.strikes <= 1:
            continue  # one failure, already over: the next request is the trial
        wanted[(channel_id, parts[2] if len(parts) == 3 else None)] = None
    return list(wanted)[:limit]


def error_rate_sweep(*, now=None) -> list[dict]:
    """Disable channels whose attempts over ROUTING_ERROR_WINDOW_S failed at
    ROUTING_DISABLE_ERROR_RATE or more (transient errors: 5xx, timeouts, connection), over at
    least ROUTING_DISABLE_MIN_ATTEMPTS attempts: never for one stray error."""
    from datetime import datetime, timedelta, timezone as tz

    from django.db.models import Count, Q

    from observability.models import RewardLog

    from .models import Channel

    now = now or datetime.now(tz.utc)
    since = now - timedelta(seconds=settings.ROUTING_ERROR_WINDOW_S)
    rows = (
        RewardLog.objects.filter(created_at__gt=since, reward__isnull=False)
        .values("channel_id")
        .annotate(total=Count("id"), errors=Count("id", filter=Q(outcome=ErrorKind.TRANSIENT.value)))
    )
    enabled = set(Channel.objects.filter(status=Channel.Status.ENABLED).values_list("pk", flat=True))
    disabled = []
    for row in rows:
        total, errors = row["total"], row["errors"]
        if row["channel_id"] not in enabled or total < settings.ROUTING_DISABLE_MIN_ATTEMPTS:
            continue
        rate = errors / total
        if rate >= settings.ROUTING_DISABLE_ERROR_RATE:
            minutes = settings.ROUTING_ERROR_WINDOW_S / 60
            reason = f"error rate {rate:.0%} ({errors} of {total} attempts) over the last {minutes:g} min"
            if channel_auto_disable(channel_id=row["channel_id"], kind="error_rate", reason=reason):
                disabled.append({"channel_id": row["channel_id"], "reason": reason})
    return disabled
