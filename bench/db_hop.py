"""The cost of one hop from the event loop to a database thread and back, per call: asgiref's
`sync_to_async(thread_sensitive=False)` (what `common.db.run_db` used to be) against `run_db` now
(`run_in_executor` on its own pool, in a copy of the context, shielded) and `run_db_writer` (SQLite's
money transactions: one thread, one future, one call_soon_threadsafe). The work itself is a
no-op, so what is left is the hop; all run on uvloop, as the relay does, in alternating rounds
(the machine is noisy). Prints figures, asserts nothing.

    .venv/bin/python bench/db_hop.py --n 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="CPU and wall time of one event-loop -> thread hop, per call.")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokenhub-hop-") as tmp:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="relay.settings",
            DATABASE_URL=f"sqlite:///{tmp}/hop.db",
            SECRET_KEY="bench",
            DEBUG="0",
            TOKENHUB_VAR_DIR=str(Path(tmp) / "var"),
        )
        for k in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            os.environ.pop(k, None)
        import django

        django.setup()
        from asgiref.sync import sync_to_async

        from common import db

        old = sync_to_async(db._fresh, thread_sensitive=False)

        async def via_asgiref(fn, /, **kwargs):
            return await old(fn, kwargs)

        def nothing(**kwargs):
            return None

        async def measure(run, n: int) -> tuple[float, float]:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await run(nothing, x=1)
            return (time.process_time() - cpu0) / n * 1e6, (time.perf_counter() - wall0) / n * 1e6

        async def rounds() -> dict:
            ways = {"asgiref sync_to_async": via_asgiref, "run_db (run_in_executor)": db.run_db,
                    "run_db_writer (one thread)": db.run_db_writer}
            figures: dict = {name: [] for name in ways}
            for run in ways.values():
                await measure(run, 500)  # warm: threads, imports
            for _ in range(a.rounds):
                for name, run in ways.items():
                    figures[name].append(await measure(run, a.n))
            return figures

        figures = uvloop.run(rounds())
    print(f"one hop to a thread and back, {a.n} calls x {a.rounds} rounds (median of rounds; process CPU, all threads):")
    for name, values in figures.items():
        cpu = sorted(v[0] for v in values)[len(values) // 2]
        wall = sorted(v[1] for v in values)[len(values) // 2]
        print(f"  {name:28s} {cpu:7.1f} us CPU/call  {wall:7.1f} us wall/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
