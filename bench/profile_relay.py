"""Profile the relay's event-loop thread under load, to find where its CPU per request goes.

    .venv/bin/python bench/profile_relay.py                       # non-streamed, c=32, 6 s
    .venv/bin/python bench/profile_relay.py --mode stream --concurrency 1 --priced  # (bench/run.py prices by default)

Same set-up as bench/run.py (fake upstream, temporary SQLite, management commands), then the relay
in ONE uvicorn process (uvloop + httptools) run under cProfile, loaded for --seconds, stopped
with SIGINT, and the top functions printed. cProfile sees only the event-loop thread: database
work that the relay runs in worker threads (run_db) shows only as the awaits around it;
for those, a sampling profiler such as py-spy (`py-spy record --threads -p PID`) is the tool.
Profiling slows the relay down several times: read shares, not timings.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import procs  # noqa: E402
import run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Profile the relay's event-loop thread under load (cProfile).")
    p.add_argument("--mode", choices=("plain", "stream"), default="plain")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--priced", action="store_true", help="price the model (reservation and settlement run)")
    p.add_argument("--scale", action="store_true", help="PostgreSQL + Redis (as bench/run.py --scale)")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tokenhub")
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    p.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative, ...)")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--out", help="keep the .prof file here (with --py-spy: the collapsed stacks)")
    p.add_argument("--syscalls", action="store_true",
                   help="instead of cProfile: count the relay's system calls per request (strace -c -f attached after the "
                        "warm-up; counts do not depend on how busy the machine is)")
    p.add_argument("--py-spy", dest="py_spy", metavar="EXE",
                   help="instead of cProfile: sample every thread of the relay with this py-spy executable (collapsed stacks, "
                        "attached after the warm-up) and print where the CPU goes: a view cProfile cannot give, since it sees "
                        "only the event loop's thread")
    a = p.parse_args(argv)
    stream = a.mode == "stream"
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="tokenhub-profile-"))
    prof = Path(a.out).resolve() if a.out else tmp / "relay.prof"
    try:
        fake, fport = run.start_fake_upstream(tmp, 0.0)
        env = run.relay_env(tmp, None, (a.database_url, a.redis_url) if a.scale else None)
        notes: list[str] = []
        key = run.setup_tokenhub(env, fport, notes, a.priced)
        for n in notes:
            run.log(n)
        port = procs.free_port()
        profiler = [] if (a.syscalls or a.py_spy) else ["-m", "cProfile", "-o", str(prof)]
        argv_ = [sys.executable, *profiler, "-m", "uvicorn", "relay.asgi:application",
                 "--host", run.HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                 "--no-access-log", "--log-level", "warning"]
        relay = procs.Managed("relay-profiled", argv_, env, str(run.REPO), str(tmp / "relay.log"))
        ok, why = procs.wait_http(f"http://{run.HOST}:{port}/healthz", relay, 90)
        if not ok:
            run.log(f"relay did not start: {why}\n{relay.log_tail()}\n(temporary directory kept: {tmp})")
            return 1
        payload = loadgen.build_request(run.HOST, port, run.CHAT_PATH, loadgen.build_body(stream), key)
        uvloop.run(loadgen.run_load(run.HOST, port, payload, a.concurrency, 1.0, stream))
        tracer = None
        if a.syscalls:
            counts = tmp / "syscalls.txt"
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(counts), "-p", str(relay.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached to every thread
        stacks = tmp / "stacks.txt"
        if a.py_spy:
            tracer = subprocess.Popen([a.py_spy, "record", "--format", "raw", "--threads", "--nonblocking", "--rate", "250",
                                       "-o", str(stacks), "--pid", str(relay.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        run.log(f"loading: {a.mode}, c={a.concurrency}, {a.seconds:g} s")
        r = uvloop.run(loadgen.run_load(run.HOST, port, payload, a.concurrency, a.seconds, stream))
        run.log(f"{r['requests']} requests ({r['rps']:.0f}/s under the profiler), {r['errors']} errors "
                f"{r['error_samples'][:1]}")
        if tracer is not None and a.py_spy:
            time.sleep(1.0)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            _print_stacks(stacks.read_text(), r["requests"], a.limit)
            if a.out:
                shutil.copyfile(stacks, a.out)
                run.log(f"collapsed stacks kept: {a.out}")
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
            return 0
        if tracer is not None:
            time.sleep(1.0)  # deferred work (batched logs) is counted too
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
            _print_syscalls(counts.read_text(), r["requests"])
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
            return 0
        os.kill(relay.pid, signal.SIGINT)  # uvicorn shuts down; cProfile writes its file
        try:
            relay.popen.wait(30)
        except Exception:  # noqa: BLE001
            pass
    except run.SetupError as e:
        run.log(f"set-up failed: {e}")
        return 2
    finally:
        procs.stop_all()
    if not prof.exists():
        run.log("no profile written")
        return 1
    st = pstats.Stats(str(prof))
    st.sort_stats(a.sort).print_stats(a.limit)
    if a.out:
        run.log(f"profile kept: {prof}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _print_stacks(collapsed: str, requests: int, limit: int) -> None:
    """py-spy's collapsed stacks: the share of samples per function (self) and, inclusive, per
    frame of our own code and per library."""
    self_counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    print(f"{requests} requests, {total} samples (all threads, active only)")
    print("self:")
    for frame, n in sorted(self_counts.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("inclusive:")
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"  {100 * n / total:5.1f}%  {frame}")


def _print_syscalls(summary: str, requests: int) -> None:
    """strace's summary table, per request."""
    rows = []
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[3].isdigit():
            rows.append((int(parts[3]), parts[-1]))
    total = sum(n for n, name in rows if name != "total")
    print(f"{requests} requests; system calls of the relay process (all threads) per request: {total / max(1, requests):.1f}")
    for n, name in sorted(rows, reverse=True)[:15]:
        if name != "total":
            print(f"  {n / max(1, requests):8.2f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
