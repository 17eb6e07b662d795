"""The board: what the router, the prober and the jobs read and write health through.

The hot path reads it once per request (`aview`: one pipelined round trip, reused for
ROUTING_HEALTH_CACHE_S); successes are counted locally and flushed every
ROUTING_HEALTH_FLUSH_S; a failure is written at once (one Lua call), so every process stops
sending to that channel. Sync calls serve the jobs, admin and commands.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from django.conf import settings

from common import background
from common import redis as shared_redis
from providers.base import ErrorKind, ProviderError

from .state import (
    KEY_OWNED,
    Cooldown,
    HealthView,
    Pair,
    PairStats,
    channel_key,
    failure_base_s,
    failure_reason,
    failure_scope,
    key_key,
    pair_key,
)
from .stores import LocalStore, RedisStore

log = logging.getLogger(__name__)


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
        # Rebuilt when REDIS_URL or the database (the key namespace) changes: tests switch both.
        where = (settings.REDIS_URL or "", shared_redis.key("health") + ":")
        if self._store is None or self._store_url != where:
            self._store = RedisStore(where[1]) if where[0] else LocalStore()
            self._store_url = where
        return self._store

    # reading

    @staticmethod
    def _keys(model: str, channel_ids, upstream_keys=()) -> tuple[list[str], list[Pair]]:
        """Record names to read: each channel, each pair, and each upstream key of the
        multi-key channels (`upstream_keys`: (channel id, fingerprint) pairs)."""
        ids = list(dict.fromkeys(channel_ids))
        names = [channel_key(c) for c in ids] + [pair_key(c, model) for c in ids] + [key_key(c, fp) for c, fp in upstream_keys]
        return names, [(c, model) for c in ids]

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

    async def aview(self, model: str, channel_ids, upstream_keys=()) -> HealthView:
        """The health of these channels for `model` (and of these upstream keys): one round
        trip to Redis at most."""
        upstream_keys = tuple(upstream_keys)
        keys, pairs = self._keys(model, channel_ids, upstream_keys)
        cache_key = (model, tuple(pairs), upstream_keys)
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

    def view(self, model: str, channel_ids, *, fresh: bool = False, upstream_keys=()) -> HealthView:
        upstream_keys = tuple(upstream_keys)
        keys, pairs = self._keys(model, channel_ids, upstream_keys)
        cache_key = (model, tuple(pairs), upstream_keys)
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

    def key_cooldowns(self, channel_id: int) -> dict[str, Cooldown]:
        """The active cooldowns of a channel's upstream keys, by fingerprint (operators)."""
        now = time.time()
        prefix = key_key(channel_id, "")
        return {k[len(prefix):]: r for k, r in self.store.all_records().items() if k.startswith(prefix) and r.until > now}

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

    async def afailed(
        self, channel_id: int, model: str, error: ProviderError, *, latency_ms: float = 0.0, key_fp: str | None = None
    ) -> Cooldown:
        """Record a failure and cool what it belongs to. `key_fp`: the upstream key of a
        multi-key channel the attempt used; a failure that is the key's (KEY_OWNED) cools it alone."""
        self._count(channel_id, model, failed=True, is_error=error.kind is ErrorKind.TRANSIENT, latency_ms=latency_ms)
        key, args = self._cool_args(channel_id, model, error, key_fp)
        store = self.store
        cooldown = await store.acool(key, **args) if store.is_shared else store.cool(key, **args)
        self._forget_views()
        self._maybe_flush()
        return cooldown

    def failed(
        self, channel_id: int, model: str, error: ProviderError, *, latency_ms: float = 0.0, key_fp: str | None = None
    ) -> Cooldown:
        self._count(channel_id, model, failed=True, is_error=error.kind is ErrorKind.TRANSIENT, latency_ms=latency_ms)
        key, args = self._cool_args(channel_id, model, error, key_fp)
        cooldown = self.store.cool(key, **args)
        self._forget_views()
        self.flush()
        return cooldown

    @staticmethod
    def _cool_args(channel_id: int, model: str, error: ProviderError, key_fp: str | None = None):
        if key_fp and error.kind in KEY_OWNED:
            key = key_key(channel_id, key_fp)
        else:
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

    async def asucceeded(
        self, channel_id: int, model: str, *, latency_ms: float, view: HealthView | None = None, key_fp: str | None = None
    ) -> None:
        """A success ends a streak (half-open trial passed), the key's too when `key_fp` names
        the upstream key used. Counted locally; Redis is touched only when a streak was on record."""
        self._count(channel_id, model, failed=False, is_error=False, latency_ms=latency_ms)
        upstream_keys = ((channel_id, key_fp),) if key_fp else ()
        if view is None and not self.store.is_shared:
            view = self.view(model, [channel_id], fresh=True, upstream_keys=upstream_keys)  # memory: free to look
        if view is not None and (view.streak(channel_id, model) or (key_fp and view.key_streak(channel_id, key_fp))):
            keys = [channel_key(channel_id), pair_key(channel_id, model)] + [key_key(c, fp) for c, fp in upstream_keys]
            store = self.store
            await store.areset(keys) if store.is_shared else store.reset(keys)
            self._forget_views()
        self._maybe_flush()

    def succeeded(self, channel_id: int, model: str, *, latency_ms: float) -> None:
        self._count(channel_id, model, failed=False, is_error=False, latency_ms=latency_ms)
        self.reset(channel_id, model)
        self.flush()

    def cool(self, channel_id: int, *, seconds: float, reason: str, model: str | None = None, key_fp: str | None = None) -> Cooldown:
        """Cool a channel (or pair, or one upstream key) for exactly `seconds` (operators, tests)."""
        key = key_key(channel_id, key_fp) if key_fp else channel_key(channel_id) if model is None else pair_key(channel_id, model)
        record = self.store.cool(key, now=time.time(), base_s=seconds, retry_after_s=seconds, max_s=seconds, reason=reason, kind="manual")
        self._forget_views()
        return record

    def reset(self, channel_id: int, model: str | None = None) -> None:
        """End the cooldowns and streaks of a channel (all its pairs and upstream keys when no
        model is given)."""
        if model is not None:
            keys = [channel_key(channel_id), pair_key(channel_id, model)]
        else:
            mine = (f"p:{channel_id}:", key_key(channel_id, ""))
            keys = [k for k in self.store.all_records() if k == channel_key(channel_id) or k.startswith(mine)]
        self.store.reset(keys)
        self._forget_views()

    # flushing

    def _maybe_flush(self) -> None:
        if not self._pending or self._flushing:
            return
        if time.monotonic() - self._last_flush < settings.ROUTING_HEALTH_FLUSH_S:
            return
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
