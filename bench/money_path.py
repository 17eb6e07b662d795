"""The money path alone, in process: CPU per request of `Meter.reserve` + `Meter.settle` (hold and
settlement in the database as the relay calls them: on PostgreSQL one statement each on the event
loop, `common.db.pg_row`; on SQLite through `run_db`), with a cProfile of it.

    .venv/bin/python bench/money_path.py                  # SQLite in a temporary directory
    .venv/bin/python bench/money_path.py --n 2000 --profile --limit 30

cProfile in bench/profile_relay.py sees only the event-loop thread; the database work the relay
runs in worker threads (SQLite) is measured here instead (the profile covers every thread: the calls run
one after another, each awaited). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="CPU of the money path (hold + settle) per request, in process.")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--sort", default="tottime")
    p.add_argument("--scale", action="store_true", help="PostgreSQL + Redis (a fresh database beside --database-url)")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tokenhub")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tokenhub-money-"))
    try:
        fake, port = run.start_fake_upstream(tmp, 0.0)
        try:
            env = run.relay_env(tmp, None, (a.database_url, a.redis_url) if a.scale else None)
            key = run.setup_tokenhub(env, port, [], priced=True)
        finally:
            fake.stop()
        os.environ.update(env)
        sys.path.insert(0, str(run.REPO))
        import django

        django.setup()
        return asyncio.run(_measure(key, a))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _measure(secret: str, a) -> int:
    # Imported after django.setup(): they read the settings and the models.
    from accounts import keycache
    from accounts.selectors import key_hash
    from channels.table import table_aget
    from providers.base import Usage
    from routing.journey import Call, identity_make
    from routing.metering import Meter

    policy = await keycache.key_policy_aget(key_hash=key_hash(secret))
    table = await table_aget()
    info = table.resolve("bench-model")
    route = table.routes[info.public_id][0]
    request = {"model": "bench-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}

    async def one(i: int) -> None:
        call = Call(identity_make(request_id=f"req_money_{i}", policy=policy, client_ip="127.0.0.1", endpoint="chat.completions", body_size=80))
        meter = Meter(call, info, dict(request))
        await meter.prepare()
        assert await meter.reserve(route) is None
        call.attempts.route = route  # as `send` records the route that answered
        await meter.settle(Usage(5, 10), is_estimated=False)

    for i in range(50):  # warm: connections, caches
        await one(-i - 1)
    cpu0, wall0, times0 = time.process_time(), time.perf_counter(), os.times()
    for i in range(a.n):
        await one(i)
    cpu, wall, times1 = time.process_time() - cpu0, time.perf_counter() - wall0, os.times()
    print(f"  user {(times1.user - times0.user) / a.n * 1000:.3f} ms/req, system {(times1.system - times0.system) / a.n * 1000:.3f} ms/req")
    print(f"money path (prepare + reserve + settle as the relay runs them), {a.n} requests: {cpu / a.n * 1000:.3f} ms CPU/req, "
          f"{wall / a.n * 1000:.3f} ms wall/req (process CPU, all threads)")
    if a.profile:
        # The database work itself, in one thread under cProfile (cProfile sees one thread).
        # Here the database calls run inline in that thread (the hop itself is measured above).
        from billing import services as billing_services
        from routing import metering

        async def inline(fn, /, **kwargs):
            return fn(**kwargs)

        metering.run_db = billing_services.run_db = inline
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # only this profile: the calls run inline on purpose
        profiler = cProfile.Profile()

        async def all_inline() -> None:
            for i in range(a.n):
                await one(a.n + i)

        def sync_loop() -> None:
            # one loop, one task for every call: Django keeps a connection per context on a
            # loop, so a loop per call would connect per call (what this profile once showed)
            asyncio.run(one(-100))  # the connection of this context
            profiler.enable()
            try:
                asyncio.run(all_inline())
            finally:
                profiler.disable()

        await asyncio.to_thread(sync_loop)
        pstats.Stats(profiler).sort_stats(a.sort).print_stats(a.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
