"""Where health is kept: `LocalStore` in this process's memory (the embedded default) or
`RedisStore`, shared by every web process and worker when REDIS_URL is set. Both keep the rules
of `state`; the Redis store runs the cooldown rule atomically in one Lua script.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from common import redis as shared_redis

from .state import STAT_FIELDS, Cooldown, Pair, PairStats, cooldown_next, cooldown_parse, stats_bucket, stats_from


def key_scope(key: str) -> str:
    return "channel" if key.startswith("c:") else "key" if key.startswith("k:") else "model"


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
            stats = {pair: stats_from(self._stats[pair], now) for pair in pairs if pair in self._stats}
        return records, stats

    def cool(self, key: str, *, now: float, base_s: float, retry_after_s: float | None, max_s: float, reason: str, kind: str) -> Cooldown:
        with self._lock:
            entry = self._records.get(key)
            old = entry[0] if entry is not None and entry[1] > now else None
            until, strikes = cooldown_next(old, now=now, base_s=base_s, retry_after_s=retry_after_s, max_s=max_s)
            record = Cooldown(until, reason, strikes, kind, key_scope(key), now)
            self._records[key] = (record, until + settings.ROUTING_STRIKE_MEMORY_S)
            return record

    def add(self, increments: dict[Pair, list[float]], now: float) -> None:
        current, _ = stats_bucket(now)
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
    """Health in Redis, shared by every process, under one key prefix (`common.redis.key`).
    Sync calls for jobs, admin and commands; async calls (the event loop's client) for the hot
    path."""

    is_shared = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @staticmethod
    def _fields(now: float) -> tuple[list[str], int]:
        current, _ = stats_bucket(now)
        return [f"{name}:{b}" for b in (current, current - 1) for name in STAT_FIELDS], current

    def _stat_key(self, pair: Pair) -> str:
        return f"{self.prefix}s:{pair[0]}:{pair[1]}"

    def _read_into(self, pipe, keys, pairs, now) -> None:
        fields, _ = self._fields(now)
        pipe.mget([self.prefix + k for k in keys] or [self.prefix + "none"])
        for pair in pairs:
            pipe.hmget(self._stat_key(pair), fields)

    @staticmethod
    def _parse(keys, pairs, results, now):
        records = {}
        for key, raw in zip(keys, results[0]):
            record = cooldown_parse(raw, key_scope(key))
            if record is not None:
                records[key] = record
        current, _ = stats_bucket(now)
        stats = {}
        for pair, values in zip(pairs, results[1:]):
            if not any(values):
                continue
            numbers = [float(v) if v else 0.0 for v in values]
            stats[pair] = stats_from({current: numbers[:5], current - 1: numbers[5:]}, now)
        return records, stats

    def read(self, keys, pairs, now):
        pipe = shared_redis.client_sync().pipeline(transaction=False)
        self._read_into(pipe, keys, pairs, now)
        return self._parse(keys, pairs, pipe.execute(), now)

    async def aread(self, keys, pairs, now):
        pipe = shared_redis.client_async().pipeline(transaction=False)
        self._read_into(pipe, keys, pairs, now)
        return self._parse(keys, pairs, await pipe.execute(), now)

    @staticmethod
    def _cool_args(now, base_s, retry_after_s, max_s, reason, kind):
        return [f"{now:.3f}", base_s, -1 if retry_after_s is None else retry_after_s, max_s, reason, kind, settings.ROUTING_STRIKE_MEMORY_S]

    def cool(self, key, *, now, base_s, retry_after_s, max_s, reason, kind):
        script = shared_redis.client_sync().register_script(_COOL_LUA)
        raw = script(keys=[self.prefix + key], args=self._cool_args(now, base_s, retry_after_s, max_s, reason, kind))
        return cooldown_parse(raw, key_scope(key))

    async def acool(self, key, *, now, base_s, retry_after_s, max_s, reason, kind):
        script = shared_redis.client_async().register_script(_COOL_LUA)
        raw = await script(keys=[self.prefix + key], args=self._cool_args(now, base_s, retry_after_s, max_s, reason, kind))
        return cooldown_parse(raw, key_scope(key))

    def _add_to(self, pipe, increments, now):
        current, _ = stats_bucket(now)
        expire_s = int(settings.ROUTING_HEALTH_WINDOW_S * 3) + 1
        for pair, values in increments.items():
            key = self._stat_key(pair)
            for name, value in zip(STAT_FIELDS, values):
                if value:
                    pipe.hincrbyfloat(key, f"{name}:{current}", value)
            pipe.hdel(key, *[f"{name}:{current - 2}" for name in STAT_FIELDS])  # the bucket that slid out
            pipe.expire(key, expire_s)

    def add(self, increments, now):
        pipe = shared_redis.client_sync().pipeline(transaction=False)
        self._add_to(pipe, increments, now)
        pipe.execute()

    async def aadd(self, increments, now):
        pipe = shared_redis.client_async().pipeline(transaction=False)
        self._add_to(pipe, increments, now)
        await pipe.execute()

    def reset(self, keys):
        if keys:
            shared_redis.client_sync().delete(*[self.prefix + k for k in keys])

    async def areset(self, keys):
        if keys:
            await shared_redis.client_async().delete(*[self.prefix + k for k in keys])

    def all_records(self) -> dict[str, Cooldown]:
        client = shared_redis.client_sync()
        found = {}
        keys = list(client.scan_iter(match=self.prefix + "[cpk]:*", count=500))
        if keys:
            for key, raw in zip(keys, client.mget(keys)):
                short = key.decode()[len(self.prefix):]
                record = cooldown_parse(raw, key_scope(short))
                if record is not None:
                    found[short] = record
        return found

    def clear(self) -> None:
        client = shared_redis.client_sync()
        keys = list(client.scan_iter(match=self.prefix + "*", count=500))
        if keys:
            client.delete(*keys)
