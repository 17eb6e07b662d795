"""TokenHub benchmark: the relay against a fast fake OpenAI upstream, beside the upstream direct.

    .venv/bin/python bench/run.py                     # uvicorn, 2 workers, 5 s per cell
    .venv/bin/python bench/run.py --quick             # short cells (a smoke run)
    .venv/bin/python bench/run.py --server all        # uvicorn x2, uvicorn x1, granian x2, daphne
    .venv/bin/python bench/run.py --json              # one JSON object on stdout instead of tables

In one run: start bench/fake_upstream.py; measure it directly; set TokenHub up in a temporary
SQLite database with the management commands; start the relay under each chosen server; measure
non-streamed and streamed chat completions at each concurrency; print figures beside the targets.
It prints figures and never asserts timings: the exit status is non-zero only when the benchmark
itself could not run. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import uvloop

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import procs  # noqa: E402

HOST = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"

# Our targets, from the performance issue. LiteLLM's figures are never typed in here: `--peer
# litellm` (make bench-peer) measures LiteLLM's proxy in the same run, against the same upstream.
TARGETS = {"added_p50_ms_c1_plain": 3.0, "relay_cpu_ms_plain": 3.0, "relay_cpu_ms_stream": 6.0}
PEER_VENV = HERE / ".peer" / "litellm"
LITELLM_VERSION = "1.106.2"
# relay CPU per request and added p50 should be at most 1/8 (non-streamed) and 1/12 (streamed) of
# LiteLLM's; c=32 non-streamed throughput at least 4x
PEER_TARGETS = {"cpu_plain": 8.0, "cpu_stream": 12.0, "added_p50": 8.0, "rps_top": 4.0}

SERVERS = {
    "uvicorn": "uvicorn, 2 workers, uvloop + httptools (the recommended production server)",
    "uvicorn1": "uvicorn, 1 worker, uvloop + httptools",
    "granian": "granian, 2 workers, asginl, uvloop",
    "daphne": "daphne, 1 process",
}


def log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def bin_path(name: str) -> str:
    for d in (Path(sys.executable).parent, REPO / ".venv" / "bin"):
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"bench: {name} not found next to {sys.executable} nor in .venv/bin")
    return found


def server_argv(server: str, port: int) -> list[str]:
    app = "relay.asgi:application"
    if server in ("uvicorn", "uvicorn1"):
        workers = "2" if server == "uvicorn" else "1"
        return [bin_path("uvicorn"), app, "--host", HOST, "--port", str(port), "--workers", workers,
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    if server == "granian":
        return [bin_path("granian"), "--interface", "asginl", "--host", HOST, "--port", str(port),
                "--workers", "2", "--loop", "uvloop", "--no-access-log", "--log-level", "warning", app]
    if server == "daphne":
        return [bin_path("daphne"), "-b", HOST, "-p", str(port), "-v", "0", app]
    raise SystemExit(f"bench: unknown server {server!r}; choose from {', '.join(SERVERS)} or all")


# ---------------------------------------------------------------- fake upstream


def start_fake_upstream(tmp: Path, chunk_interval_ms: float) -> tuple[procs.Managed, int]:
    argv = [sys.executable, str(HERE / "fake_upstream.py"), "--host", HOST, "--port", "0",
            "--chunk-interval-ms", str(chunk_interval_ms)]
    m = procs.Managed("fake-upstream", argv, dict(os.environ), str(REPO), str(tmp / "fake_upstream.log"),
                      stdout=subprocess.PIPE)
    deadline = time.monotonic() + 15
    line = b""
    while time.monotonic() < deadline and b"\n" not in line:
        r, _, _ = select.select([m.popen.stdout], [], [], 0.2)
        if r:
            chunk = os.read(m.popen.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    if not line.startswith(b"LISTENING "):
        raise SystemExit(f"bench: fake upstream did not start: {line!r}\n{m.log_tail()}")
    return m, int(line.split()[1])


# ---------------------------------------------------------------- TokenHub set-up


def fresh_postgres(base_url: str) -> str:
    """A new, empty database beside the one in `base_url` (its name + "_bench", so benches run
    from different worktrees against different base databases never drop each other's); returns its URL."""
    import psycopg
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    bench_db = (parts.path.strip("/") or "tokenhub") + "_bench"
    with psycopg.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                         password=parts.password, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {bench_db}")
    return parts._replace(path="/" + bench_db).geturl()


def relay_env(tmp: Path, conn_max_age: int | None = None, scale: tuple[str, str] | None = None) -> dict:
    env = dict(os.environ)
    for k in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(k, None)
    if scale:
        env["REDIS_URL"] = scale[1]
    env.update(
        DATABASE_URL=fresh_postgres(scale[0]) if scale else (
            f"sqlite:///{tmp}/bench.db" + (f"?conn_max_age={conn_max_age}" if conn_max_age is not None else "")),
        TOKENHUB_UPSTREAM_ALLOW_CIDRS="127.0.0.0/8",
        DEBUG="0",
        SECRET_KEY="bench",
        TOKENHUB_VAR_DIR=str(tmp / "var"),
        DJANGO_SETTINGS_MODULE="relay.settings",
        PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


class SetupError(RuntimeError):
    pass


def manage(env: dict, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def manage_json(env: dict, *args: str) -> dict:
    p = manage(env, *args)
    if p.returncode != 0:
        raise SetupError(f"manage.py {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-1500:]}")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        raise SetupError(f"manage.py {' '.join(args)} did not print one JSON object on stdout: "
                         f"{p.stdout[:500]!r} (stderr: {p.stderr[-500:]!r})") from None


def relay_available() -> str | None:
    """None when the relay's entry points exist; else what is missing."""
    missing = [f for f in ("manage.py", "relay/asgi.py", "relay/settings.py") if not (REPO / f).exists()]
    return ", ".join(missing) + " missing" if missing else None


def setup_tokenhub(env: dict, upstream_port: int, notes: list[str], priced: bool = False) -> str:
    """Migrate, create the tenant, channel, price, credit and key; return the API key."""
    (Path(env["TOKENHUB_VAR_DIR"])).mkdir(parents=True, exist_ok=True)
    p = manage(env, "help", "--commands")
    if p.returncode != 0:
        raise SetupError(f"manage.py help --commands failed: {p.stderr.strip()[-1500:]}")
    commands = set(p.stdout.split())
    missing = [c for c in ("migrate", "create_tenant", "add_channel", "create_api_key") if c not in commands]
    if missing:
        raise SetupError(f"management command(s) not there yet: {', '.join(missing)}")
    log("migrate")
    p = manage(env, "migrate", "--noinput")
    if p.returncode != 0:
        raise SetupError(f"migrate failed: {p.stderr.strip()[-1500:]}")
    manage_json(env, "create_tenant", "bench", "--json")
    manage_json(env, "add_channel", "fake", "--type", "openai", "--base-url", f"http://{HOST}:{upstream_port}/v1",
                "--models", "bench-model", "--json")
    price = ("bench-model", "--input", "0.15", "--output", "0.6") if priced else ("bench-model", "--free")
    for cmd, args in (("set_price", price),
                      ("credit", ("bench", "--balance", "credit", "--amount", "1000000"))):
        if cmd not in commands:
            notes.append(f"`manage.py {cmd}` does not exist yet: skipped")
            continue
        p = manage(env, cmd, *args, "--json")
        if p.returncode != 0:
            notes.append(f"`manage.py {cmd} {' '.join(args)}` failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    key = manage_json(env, "create_api_key", "bench", "--json")
    if not key.get("key"):
        raise SetupError(f"create_api_key printed no key: {key}")
    return key["key"]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe_relay(port: int, api_key: str, stream: bool) -> str | None:
    """One request through the relay, validated; None when right, else what is wrong."""
    body = loadgen.build_body(stream)
    req = urllib.request.Request(f"http://{HOST}:{port}{CHAT_PATH}", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    try:
        with _OPENER.open(req, timeout=30) as r:
            status, data, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, data, headers = e.code, e.read(), e.headers
    except OSError as e:
        return f"request failed: {e!r}"
    why = loadgen.validate(status, data, stream, True)
    if why is None and not headers.get("x-request-id"):
        return "answer has no x-request-id header"
    return why


# ---------------------------------------------------------------- measuring


def machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0) \
        + getattr(t, "steal", 0)


def my_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def upstream_stats(port: int) -> dict:
    with _OPENER.open(f"http://{HOST}:{port}/_bench/stats", timeout=5) as r:
        return json.loads(r.read())


def measure(label: str, port: int, api_key: str | None, stream: bool, concurrency: int, seconds: float,
            warmup: float, settle: float, groups: dict[str, procs.Managed], upstream_port: int,
            ramp: bool = True, include_usage: bool | None = True) -> dict:
    """One cell: warm-up (which opens the connections), settle, then the measured run on the same
    connections, with CPU counters read around it."""
    payload = loadgen.build_request(HOST, port, CHAT_PATH, loadgen.build_body(stream), api_key)
    snap = {}

    async def cell():
        conns = [None] * concurrency
        try:
            if warmup > 0:
                await loadgen.run_load(HOST, port, payload, concurrency, warmup, stream, include_usage, conns=conns, ramp=ramp)
                await asyncio.sleep(settle)
            snap["up0"] = upstream_stats(upstream_port)
            snap["before"] = {n: g.cpu() for n, g in groups.items()}
            snap["me0"], snap["busy0"], snap["t0"] = my_cpu(), machine_busy(), time.perf_counter()
            r = await loadgen.run_load(HOST, port, payload, concurrency, seconds, stream, include_usage, conns=conns, ramp=ramp)
            # deferred work of these requests (batched logs, settlement) is theirs: let it run, then count
            await asyncio.sleep(settle)
            return r
        finally:
            loadgen.close_all(conns)

    r = uvloop.run(cell())
    after = {n: g.cpu() for n, g in groups.items()}
    me1, busy1, t1 = my_cpu(), machine_busy(), time.perf_counter()
    up1 = upstream_stats(upstream_port)
    up0, before, me0, busy0, t0 = snap["up0"], snap["before"], snap["me0"], snap["busy0"], snap["t0"]
    n = max(r["requests"], 1)
    cpu = {name: procs.cpu_delta(before[name], after[name]) for name in groups}
    ours = sum(cpu.values()) + (me1 - me0)
    window = (t1 - t0) * psutil.cpu_count()
    r.update(
        target=label,
        mode="stream" if stream else "plain",
        concurrency=concurrency,
        cpu_ms_per_req={name: v / n * 1000 for name, v in cpu.items()},
        # CPU seconds per process of each group during the cell (is the load spread over the workers?)
        cpu_s_per_process={name: sorted((round(v - before[name].get(pid, 0.0), 3) for pid, v in after[name].items()),
                                        reverse=True) for name in groups},
        loadgen_cpu_ms_per_req=(me1 - me0) / n * 1000,
        # the stats call after the cell is one connection and one request of its own
        upstream_new_connections=up1["connections"] - up0["connections"] - 1,
        upstream_requests_per_request=(up1["requests"] - up0["requests"] - 1) / n,
        machine_busy_pct=100 * (busy1 - busy0) / window if window else 0.0,
        other_procs_cpu_pct=max(0.0, 100 * ((busy1 - busy0) - ours) / window) if window else 0.0,
    )
    return r


def split(cell) -> str:
    """How the relay's CPU in a cell spread over its processes, in %, e.g. 51/49/0."""
    per = cell.get("cpu_s_per_process", {}).get("relay")
    if not per:
        return "-"
    total = sum(max(v, 0.0) for v in per)
    if total <= 0:
        return "-"
    return "/".join(str(round(100 * max(v, 0.0) / total)) for v in per if v / total >= 0.005) or "-"


def fmt(v, spec=".2f", none="-"):
    if v is None or v != v:  # None or NaN
        return none
    return format(v, spec)


def print_report(meta: dict, cells: list[dict], summary: dict, notes: list[str]) -> None:
    out = sys.stdout.write
    out(f"\nTokenHub bench -- {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, "
        f"{meta['seconds']:g} s per cell after {meta['warmup']:g} s warm-up, "
        f"fake upstream chunk gap {meta['chunk_interval_ms']:g} ms\n")
    if meta.get("rounds", 1) > 1:
        out(f"Each cell measured {meta['rounds']} times, interleaved (direct, LiteLLM, TokenHub in turn, all servers up): "
            "each figure is the median of its rounds.\n")
    out("Load generator, fake upstream and relay share these cores: absolute req/s are noisy here; "
        "read the ratios and the CPU per request.\n\n")
    cols = [  # header, sub-header, width, value
        ("target", "", -18, lambda c: c["target"]),
        ("mode", "", -6, lambda c: c["mode"]),
        ("c", "", 3, lambda c: str(c["concurrency"])),
        ("req/s", "", 9, lambda c: f"{c['rps']:.1f}"),
        ("x direct", "req/s", 8, lambda c: fmt(c.get("rps_ratio"), ".3f")),
        ("p50", "ms", 7, lambda c: fmt(c["p50_ms"])),
        ("p99", "ms", 7, lambda c: fmt(c["p99_ms"])),
        ("ttfc p50", "ms", 8, lambda c: fmt(c.get("ttfc_p50_ms"))),
        ("+p50", "ms", 6, lambda c: fmt(c.get("added_p50_ms"))),
        ("relay CPU", "ms/req", 9, lambda c: fmt(c["cpu_ms_per_req"].get("relay"), ".3f")),
        ("up CPU", "ms/req", 7, lambda c: fmt(c["cpu_ms_per_req"].get("upstream"), ".3f")),
        ("gen CPU", "ms/req", 7, lambda c: fmt(c["loadgen_cpu_ms_per_req"], ".3f")),
        ("relay split", "% per proc", 11, lambda c: split(c)),
        ("up req", "/req", 6, lambda c: fmt(c["upstream_requests_per_request"], ".2f")),
        ("up conn", "new", 7, lambda c: str(c["upstream_new_connections"])),
        ("busy", "CPU %", 6, lambda c: f"{c['machine_busy_pct']:.0f}"),
        ("other", "CPU %", 6, lambda c: f"{c['other_procs_cpu_pct']:.1f}"),
        ("err", "", 4, lambda c: str(c["errors"])),
    ]

    def row(vals):
        return " ".join(f"{v:<{-w}}" if w < 0 else f"{v:>{w}}" for v, (_, _, w, _) in zip(vals, cols)) + "\n"

    head = row([h for h, _, _, _ in cols])
    out(head)
    out(row([sh for _, sh, _, _ in cols]))
    out("-" * (len(head) - 1) + "\n")
    for c in cells:
        out(row([f(c) for _, _, _, f in cols]))
    out("\nx direct: req/s through the relay / req/s direct at the same mode and concurrency. +p50: relay p50 "
        "minus direct p50. ttfc p50: time to the first content chunk. CPU: user+sys of the relay's processes "
        "(master and workers), of the fake upstream, of this load generator, per completed request, including "
        f"{meta['settle']:g} s after each cell for deferred work. relay split: the relay's CPU per process (master, workers), in %; up req: upstream requests per request; up conn: "
        "connections opened to the upstream during the cell. busy: the whole machine's CPU use in % of "
        "all cores; other: the part of it outside the bench (noise).\n")
    if summary:
        out("\nAgainst the targets (issue), and LiteLLM proxy (2 workers) when measured in this same run:\n")
        for srv, s in summary.items():
            out(f"\n  {srv}: {SERVERS.get(srv, srv)}\n")
            for line in s["lines"]:
                out(f"    {line}\n")
    fake = meta.get("fake_upstream")
    if fake:
        out(f"\nFake upstream alone: {fake['rps_plain']:.0f} req/s non-streamed at c={fake['concurrency']} "
            f"({fake['cpu_us_plain']:.0f} us CPU/req), {fake['rps_stream']:.0f} req/s streamed "
            f"({fake['cpu_us_stream']:.0f} us CPU/req).\n")
        for k, v in fake.get("vs_relay", {}).items():
            out(f"  vs relay {k}: fake upstream {v['rps_ratio']:.0f}x the relay's req/s; in the same cells the relay "
                f"spent {v['cpu_ratio']:.0f}x the upstream's CPU per request\n")
    for n in notes:
        out(f"note: {n}\n")


def print_markdown(meta: dict, cells: list[dict]) -> None:
    """The cells as one Markdown table (README's "Speed" section): direct, LiteLLM and TokenHub
    side by side from this one run, with the machine it ran on."""
    out = sys.stdout.write
    store = "PostgreSQL + Redis" if meta.get("scale") else "SQLite (embedded default)"
    out(f"\n{meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, {meta['date']}; TokenHub on {store}, "
        f"priced requests; {meta['seconds']:g} s per cell"
        + (f", medians of {meta['rounds']} interleaved rounds" if meta.get("rounds", 1) > 1 else "")
        + "; load generator, fake upstream and servers on the same cores.\n\n")
    out("| target | mode | c | req/s | p50 ms | p99 ms | added p50 ms | server CPU ms/req |\n")
    out("|---|---|--:|--:|--:|--:|--:|--:|\n")
    for c in cells:
        name = {"direct": "direct (fake upstream)", "litellm": "LiteLLM proxy 1.106.2"}.get(c["target"], "TokenHub")
        cpu = c["cpu_ms_per_req"].get("relay") if c["target"] != "direct" else None
        out(f"| {name} | {c['mode']} | {c['concurrency']} | {c['rps']:.0f} | {fmt(c['p50_ms'])} | {fmt(c['p99_ms'])} | "
            f"{fmt(c.get('added_p50_ms'))} | {fmt(cpu)} |\n")


def verdict(value, limit):
    if value is None or value != value:
        return "not measured"
    return "within target" if value <= limit else "OVER target"


def _ratio(theirs, ours):
    return theirs / ours if theirs is not None and ours else None


def summarize(server: str, cells: list[dict]) -> dict:
    """Our figures against the targets, and against LiteLLM's when it was measured in this run."""
    get = {(c["mode"], c["concurrency"]): c for c in cells if c["target"] == f"tokenhub/{server}"}
    peer = {(c["mode"], c["concurrency"]): c for c in cells if c["target"] == "litellm"}
    conc = sorted({k[1] for k in get})
    top = conc[-1] if conc else None
    lines, res = [], {}

    def vs_peer(key, ours, theirs, target, higher_is_better=False, per_round=None):
        if theirs is None or ours is None:
            return ""
        ratio = (ours / theirs) if higher_is_better else _ratio(theirs, ours)
        res.setdefault("vs_litellm", {})[key] = ratio
        spread = ""
        if per_round:  # (ours, theirs) of each round: how far the ratio moved from round to round
            ratios = sorted((o / t) if higher_is_better else _ratio(t, o) for o, t in per_round if o and t)
            res.setdefault("vs_litellm_per_round", {})[key] = ratios
            spread = f", {ratios[0]:.1f}x to {ratios[-1]:.1f}x over {len(ratios)} rounds" if ratios else ""
        return (f"; LiteLLM {theirs:.2f} in this run: {ratio:.1f}x{spread} "
                f"(target {target:g}x: {'met' if ratio >= target else 'NOT met'})")

    def rounds_of(ours_cell, theirs_cell, field):
        if not ours_cell or not theirs_cell or "rounds" not in ours_cell or "rounds" not in theirs_cell:
            return None
        return [(o[field], t[field]) for o, t in zip(ours_cell["rounds"], theirs_cell["rounds"])]

    plain1 = get.get(("plain", 1))
    if plain1:
        a = plain1.get("added_p50_ms")
        res["added_p50_ms_c1_plain"] = a
        theirs = (peer.get(("plain", 1)) or {}).get("added_p50_ms")
        per_round = rounds_of(plain1, peer.get(("plain", 1)), "added_p50_ms")
        lines.append(f"added p50, c=1, non-streamed: {fmt(a)} ms  (target <= {TARGETS['added_p50_ms_c1_plain']:g} ms: "
                     f"{verdict(a, TARGETS['added_p50_ms_c1_plain'])}"
                     f"{vs_peer('added_p50', a, theirs, PEER_TARGETS['added_p50'], per_round=per_round)})")
    for mode, tkey, pkey in (("plain", "relay_cpu_ms_plain", "cpu_plain"), ("stream", "relay_cpu_ms_stream", "cpu_stream")):
        vals = {c: get[(mode, c)]["cpu_ms_per_req"].get("relay") for c in conc if (mode, c) in get}
        if not vals:
            continue
        worst = max(v for v in vals.values())
        res[f"relay_cpu_ms_{mode}"] = vals
        per = ", ".join(f"{v:.2f} ms at c={c}" for c, v in vals.items())
        theirs_vals = [peer[(mode, c)]["cpu_ms_per_req"].get("relay") for c in conc if (mode, c) in peer]
        theirs = min(theirs_vals) if theirs_vals else None  # LiteLLM at its best against us at our worst
        pairs = [rounds_of(get[(mode, c)], peer.get((mode, c)), "cpu_ms_per_req") for c in conc if (mode, c) in get]
        per_round = None
        if pairs and all(pairs):  # each round: our worst concurrency against LiteLLM's best
            per_round = [(max(o for o, _ in same), min(t for _, t in same)) for same in zip(*pairs)]
        lines.append(f"relay CPU per {'non-streamed' if mode == 'plain' else 'streamed'} request: {per}  "
                     f"(target <= {TARGETS[tkey]:g} ms: {verdict(worst, TARGETS[tkey])}"
                     f"{vs_peer(pkey, worst, theirs, PEER_TARGETS[pkey], per_round=per_round)})")
    for c in sorted({1, top} if top is not None else ()):
        cell = get.get(("plain", c))
        if cell and c is not None:
            theirs = (peer.get(("plain", c)) or {}).get("rps")
            extra = vs_peer("rps_top", cell["rps"], theirs, PEER_TARGETS["rps_top"], higher_is_better=True) if c == top else (
                f"; LiteLLM {theirs:.0f} req/s" if theirs else "")
            lines.append(f"non-streamed req/s at c={c}: {cell['rps']:.0f} ({fmt(cell.get('rps_ratio'), '.3f')} of direct"
                         f"{extra})")
    if top is not None and ("plain", top) in get:
        p99, p50 = get[("plain", top)].get("p99_ms"), get[("plain", top)].get("p50_ms")
        if p99 and p50:
            res["p99_over_p50_top"] = p99 / p50
            lines.append(f"non-streamed p99 / p50 at c={top}: {p99 / p50:.1f} (target < 3)")
    if not peer:
        lines.append("LiteLLM not measured in this run: `make bench-peer` measures it beside TokenHub")
    bad = [c for c in get.values() if c["errors"]]
    if bad:
        lines.append("ERRORS: " + "; ".join(f"{c['mode']} c={c['concurrency']}: {c['errors']} "
                                            f"({', '.join(f'{k} x{v}' for k, v in list(c['error_kinds'].items())[:3])})"
                                            for c in bad))
    res["lines"] = lines
    return res


# ---------------------------------------------------------------- LiteLLM, measured in the same run


def litellm_config(tmp: Path, upstream_port: int) -> Path:
    """The same model on the same fake upstream, behind LiteLLM's proxy with a master key and
    nothing else (no database, no callbacks): its lightest configuration."""
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: http://{HOST}:{upstream_port}/v1\n"
        "      api_key: fake\n"
        "general_settings:\n"
        "  master_key: sk-bench-peer\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    return config


def start_litellm(tmp: Path, upstream_port: int, timeout_s: float) -> tuple[procs.Managed | None, int, str]:
    """LiteLLM's proxy up and healthy (it takes at least two minutes' grace, whatever `timeout_s`
    says): (process, port, "") or (None, 0, why not)."""
    log(f"starting LiteLLM proxy {LITELLM_VERSION} (2 workers)")
    timeout_s = max(timeout_s, 120.0)
    exe = PEER_VENV / "bin" / "litellm"
    if not exe.exists():
        return None, 0, f"LiteLLM is not installed in {PEER_VENV}: run `make bench-peer`"
    port = procs.free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
    argv = [str(exe), "--config", str(litellm_config(tmp, upstream_port)), "--host", HOST, "--port", str(port),
            "--num_workers", "2", "--run_gunicorn"]  # its uvicorn workers die at start-up here; gunicorn's live
    peer = procs.Managed("litellm", argv, env, str(tmp), str(tmp / "litellm.log"))
    ok, why = procs.wait_http(f"http://{HOST}:{port}/health/liveliness", peer, timeout_s)
    if not ok:
        tail = peer.log_tail(2000)
        peer.stop()
        return None, 0, f"LiteLLM did not become healthy: {why}; log tail:\n{tail}"
    return peer, port, ""


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="TokenHub relay benchmark (prints figures, asserts nothing).")
    p.add_argument("--server", default="uvicorn",
                   help=f"comma-separated servers to run the relay under: {', '.join(SERVERS)}, or all "
                        "(default: uvicorn, 2 workers)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell (default 5)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per cell (default 1, quick 0.3)")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds after each cell still counted for CPU (deferred work; default 0.7, quick 0.3)")
    p.add_argument("--quick", action="store_true", help="short cells (1.5 s): a smoke run")
    p.add_argument("--concurrency", default="1,32", help="comma-separated concurrencies (default 1,32)")
    p.add_argument("--chunk-interval-ms", type=float, default=0.0,
                   help="gap between the fake upstream's stream chunks (default 0: all at once)")
    p.add_argument("--burst-connect", action="store_true",
                   help="open a cell's connections all at once (default: one after another, each after the "
                        "previous one's first answer; a burst lets one uvicorn worker accept them all)")
    p.add_argument("--free", dest="priced", action="store_false",
                   help="mark bench-model free, so no reservation or settlement runs (default: priced at "
                        "0.15/0.6 USD per 1M tokens, the path every paying request takes)")
    p.add_argument("--conn-max-age", type=int, default=None, metavar="S",
                   help="append ?conn_max_age=S to the SQLite DATABASE_URL (experiment: keep DB connections)")
    p.add_argument("--direct-only", action="store_true", help="measure only the fake upstream directly")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the relay and its commands (repeatable), e.g. LOG_LEVEL=WARNING")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the tables")
    p.add_argument("--markdown", action="store_true", help="also print the cells as one Markdown table (README's Speed section)")
    p.add_argument("--scale", action="store_true",
                   help="run the relay on PostgreSQL and Redis (a fresh database beside --database-url) "
                        "instead of the embedded SQLite default")
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tokenhub")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    p.add_argument("--peer", choices=["litellm"], default=None,
                   help="also measure LiteLLM's proxy (2 workers) in this run, same upstream and load (make bench-peer installs it)")
    p.add_argument("--peer-settle", type=float, default=20.0, metavar="S",
                   help="seconds of rest after the peer stops, before TokenHub's cells (default 20)")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="measure every cell N times, interleaved: all servers up at once, and in each round each cell "
                        "direct, then LiteLLM, then TokenHub, seconds apart; the tables show each figure's median over "
                        "the rounds (default 1: each target's cells in one block, one target after the other)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (database, logs)")
    p.add_argument("--relay-start-timeout", type=float, default=60.0)
    a = p.parse_args(argv)
    if a.quick and a.seconds == 5.0:
        a.seconds = 1.5
    if a.warmup is None:
        a.warmup = 0.3 if a.quick else 1.0
    if a.settle is None:
        a.settle = 0.3 if a.quick else 0.7
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    a.concurrency = [int(x) for x in a.concurrency.split(",") if x.strip()]
    a.server = list(SERVERS) if a.server == "all" else [s.strip() for s in a.server.split(",") if s.strip()]
    for s in a.server:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}; choose from {', '.join(SERVERS)} or all")
    return a


def against_direct(cell: dict, direct: dict) -> dict:
    """A relay's cell set against the direct cell of the same mode and concurrency."""
    d = direct[(cell["mode"], cell["concurrency"])]
    cell["added_p50_ms"] = cell["p50_ms"] - d["p50_ms"]
    cell["rps_ratio"] = cell["rps"] / d["rps"] if d["rps"] else None
    return cell


def start_relay(server: str, env: dict, api_key: str, tmp: Path, timeout_s: float) -> tuple[procs.Managed | None, int, str]:
    """TokenHub under `server`, healthy and giving a right answer, streamed and not:
    (process, port, "") or (None, 0, why not)."""
    port = procs.free_port()
    log(f"starting {SERVERS[server]} on port {port}")
    relay = procs.Managed(f"tokenhub/{server}", server_argv(server, port), env, str(REPO), str(tmp / f"{server}.log"))
    ok, why = procs.wait_http(f"http://{HOST}:{port}/healthz", relay, timeout_s)
    if not ok:
        tail = relay.log_tail(2000)
        relay.stop()
        return None, 0, f"{server}: did not become healthy: {why}; log tail:\n{tail}"
    bad = [f"{'stream' if s else 'plain'}: {w}" for s in (False, True) if (w := probe_relay(port, api_key, s))]
    if bad:
        tail = relay.log_tail(2000)
        relay.stop()
        return None, 0, f"{server}: wrong answer from the relay, cells skipped: {'; '.join(bad)}; log tail:\n{tail}"
    return relay, port, ""


_MEDIAN_FIELDS = ("rps", "p50_ms", "p90_ms", "p99_ms", "ttfc_p50_ms", "ttfc_p99_ms", "added_p50_ms", "rps_ratio",
                  "loadgen_cpu_ms_per_req", "upstream_requests_per_request", "machine_busy_pct", "other_procs_cpu_pct")
_SUM_FIELDS = ("requests", "errors", "upstream_new_connections")


def median_cell(cells: list[dict]) -> dict:
    """One cell from the same cell measured in several rounds: each figure's median (counts
    summed), and each round's main figures under "rounds"."""
    if len(cells) == 1:
        return cells[0]
    out = dict(cells[-1])
    for name in _MEDIAN_FIELDS:
        values = [c[name] for c in cells if c.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    for name in _SUM_FIELDS:
        out[name] = sum(c[name] for c in cells)
    out["cpu_ms_per_req"] = {k: statistics.median(c["cpu_ms_per_req"][k] for c in cells) for k in cells[0]["cpu_ms_per_req"]}
    out["cpu_s_per_process"] = {
        k: [round(sum(v), 3) for v in zip(*(c["cpu_s_per_process"][k] for c in cells))] for k in cells[0]["cpu_s_per_process"]
    }
    out["error_kinds"] = dict(sum((collections.Counter(c["error_kinds"]) for c in cells), collections.Counter()))
    out["rounds"] = [
        {"p50_ms": c["p50_ms"], "added_p50_ms": c.get("added_p50_ms"), "rps": c["rps"], "cpu_ms_per_req": c["cpu_ms_per_req"].get("relay")}
        for c in cells
    ]
    return out


def measure_rounds(a, fake: procs.Managed, fport: int, env: dict | None, api_key: str | None, tmp: Path,
                   notes: list[str]) -> tuple[list[dict], int]:
    """Every cell `a.rounds` times, interleaved: the servers all up at once, and in each round,
    for each mode and concurrency, the direct cell, then LiteLLM's, then each TokenHub server's,
    one after the other. A machine whose speed drifts from minute to minute (a shared VM) then
    moves every target's figures alike; one block per target would put the drift between them.
    Returns each cell's median over the rounds (`median_cell`), and 1 when a server could not
    be measured (else 0)."""
    targets: list[tuple[str, int, str, dict, bool | None]] = []  # label, port, key, CPU groups, include_usage
    rc = 0
    try:
        if env is not None and a.peer == "litellm":
            peer, pport, why = start_litellm(tmp, fport, a.relay_start_timeout)
            if peer is None:
                notes.append(why)
                rc = 1
            else:
                targets.append(("litellm", pport, "sk-bench-peer", {"relay": peer, "upstream": fake}, None))
        for server in a.server if env is not None else ():
            relay, port, why = start_relay(server, env, api_key, tmp, a.relay_start_timeout)
            if relay is None:
                notes.append(why)
                rc = 1
                continue
            targets.append((f"tokenhub/{server}", port, api_key, {"relay": relay, "upstream": fake}, True))
        measured: dict[tuple, list[dict]] = {}
        for number in range(1, a.rounds + 1):
            for stream in (False, True):
                for c in a.concurrency:
                    mode = "stream" if stream else "plain"
                    log(f"round {number}/{a.rounds}: {mode} c={c}: direct" + "".join(f", {t[0]}" for t in targets))
                    direct = measure("direct", fport, "fake", stream, c, a.seconds, a.warmup, a.settle,
                                     {"upstream": fake}, fport, not a.burst_connect)
                    measured.setdefault(("direct", mode, c), []).append(direct)
                    for label, port, key, groups, include_usage in targets:
                        cell = measure(label, port, key, stream, c, a.seconds, a.warmup, a.settle, groups, fport,
                                       not a.burst_connect, include_usage=include_usage)
                        if cell["errors"] and label.startswith("tokenhub/"):
                            cell["relay_log_tail"] = groups["relay"].log_tail(1500)
                        measured.setdefault((label, mode, c), []).append(against_direct(cell, {(mode, c): direct}))
        order = ["direct"] + [t[0] for t in targets]
        cells = [median_cell(measured[key]) for key in sorted(measured, key=lambda k: (order.index(k[0]), k[1], k[2]))]
        for label, _port, _key, groups, _ in targets:
            if label.startswith("tokenhub/"):
                tail = groups["relay"].log_tail(3000)
                if "Traceback" in tail or "ERROR" in tail:
                    notes.append(f"{label}: the relay logged errors; log tail:\n{tail}")
        return cells, rc
    finally:
        for _label, _port, _key, groups, _ in targets:
            groups["relay"].stop()


def measure_in_blocks(a, fake: procs.Managed, fport: int, env: dict | None, api_key: str | None, tmp: Path,
                      notes: list[str], cells: list[dict]) -> int:
    """Each target's cells in one block: direct, then LiteLLM (stopped, then a rest of
    `--peer-settle`), then each TokenHub server in turn. Appends to `cells`; returns 1 when a
    server could not be measured."""
    rc = 0
    direct = {}
    for stream in (False, True):
        for c in a.concurrency:
            log(f"direct {'stream' if stream else 'plain'} c={c}")
            cell = measure("direct", fport, "fake", stream, c, a.seconds, a.warmup, a.settle,
                           {"upstream": fake}, fport, not a.burst_connect)
            direct[(cell["mode"], c)] = cell
            cells.append(cell)
    if env is None:
        return rc
    if a.peer == "litellm":
        peer, pport, why = start_litellm(tmp, fport, a.relay_start_timeout)
        if peer is None:
            notes.append(why)
            rc = 1
        else:
            try:
                for stream in (False, True):
                    for c in a.concurrency:
                        log(f"litellm {'stream' if stream else 'plain'} c={c}")
                        cell = measure("litellm", pport, "sk-bench-peer", stream, c, a.seconds, a.warmup, a.settle,
                                       {"relay": peer, "upstream": fake}, fport, not a.burst_connect,
                                       include_usage=None)
                        cells.append(against_direct(cell, direct))
            finally:
                peer.stop()
                # the cells right after it ran slower for every process, the load generator's and
                # the fake upstream's own CPU per request too (its workers' memory given back)
                time.sleep(a.peer_settle)
    for server in a.server:
        relay, port, why = start_relay(server, env, api_key, tmp, a.relay_start_timeout)
        if relay is None:
            notes.append(why)
            rc = 1
            continue
        label = f"tokenhub/{server}"
        try:
            for stream in (False, True):
                for c in a.concurrency:
                    log(f"{label} {'stream' if stream else 'plain'} c={c}")
                    cell = measure(label, port, api_key, stream, c, a.seconds, a.warmup, a.settle,
                                   {"relay": relay, "upstream": fake}, fport, not a.burst_connect)
                    if cell["errors"]:
                        cell["relay_log_tail"] = relay.log_tail(1500)
                    cells.append(against_direct(cell, direct))
            tail = relay.log_tail(3000)
            if "Traceback" in tail or "ERROR" in tail:
                notes.append(f"{server}: the relay logged errors; log tail:\n{tail}")
        finally:
            relay.stop()
    return rc


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="tokenhub-bench-"))
    notes: list[str] = []
    cells: list[dict] = []
    summary: dict = {}
    meta = {
        "cpus": psutil.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "seconds": a.seconds,
        "warmup": a.warmup,
        "settle": a.settle,
        "chunk_interval_ms": a.chunk_interval_ms,
        "concurrency": a.concurrency,
        "servers": a.server,
        "tmp": str(tmp),
        "loadavg_at_start": os.getloadavg(),
        "scale": a.scale,
        "date": time.strftime("%Y-%m-%d"),
    }
    rc = 0
    try:
        fake, fport = start_fake_upstream(tmp, a.chunk_interval_ms)
        log(f"fake upstream on {HOST}:{fport} (pid {fake.pid}); temp dir {tmp}")
        env = api_key = None
        if not a.direct_only:
            missing = relay_available()
            if missing:
                raise SetupError(f"the relay is not there yet: {missing}")
            env = relay_env(tmp, a.conn_max_age, (a.database_url, a.redis_url) if a.scale else None)
            for kv in a.env:
                k, _, v = kv.partition("=")
                env[k] = v
            log("setting TokenHub up (" + ("PostgreSQL + Redis" if a.scale else "temporary SQLite") + ")")
            api_key = setup_tokenhub(env, fport, notes, a.priced)
            meta["priced"] = a.priced
            if not a.priced:
                notes.append("bench-model is marked free (--free): no reservation or settlement per request")
        meta["rounds"] = a.rounds
        if a.rounds > 1:
            cells, rc = measure_rounds(a, fake, fport, env, api_key, tmp, notes)
        else:
            rc = measure_in_blocks(a, fake, fport, env, api_key, tmp, notes, cells)
        if any(c["target"] == "litellm" for c in cells):
            meta["litellm"] = LITELLM_VERSION
        direct = {(c["mode"], c["concurrency"]): c for c in cells if c["target"] == "direct"}
        top = max(a.concurrency)
        dp, ds = direct[("plain", top)], direct[("stream", top)]
        meta["fake_upstream"] = {
            "rps_plain": dp["rps"], "cpu_us_plain": dp["cpu_ms_per_req"]["upstream"] * 1000,
            "rps_stream": ds["rps"], "cpu_us_stream": ds["cpu_ms_per_req"]["upstream"] * 1000,
            "concurrency": top, "vs_relay": {},
        }
        for server in a.server:
            label = f"tokenhub/{server}"
            if not any(c["target"] == label for c in cells):
                continue
            for mode in ("plain", "stream"):
                cell = next(c for c in cells if c["target"] == label and c["mode"] == mode and c["concurrency"] == top)
                up = cell["cpu_ms_per_req"]["upstream"]
                if up and cell["rps"]:
                    meta["fake_upstream"]["vs_relay"][f"{server} {mode} c={top}"] = {
                        "rps_ratio": direct[(mode, top)]["rps"] / cell["rps"],
                        "cpu_ratio": cell["cpu_ms_per_req"]["relay"] / up,
                    }
            summary[server] = summarize(server, cells)
    except SetupError as e:
        notes.append(f"relay not measured: {e}")
        rc = 2
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        rc = 130
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave servers behind
        procs.stop_all()
        signal.signal(signal.SIGINT, old)

    if cells or notes:
        if a.json:
            json.dump({"meta": meta, "targets": TARGETS, "peer_targets": PEER_TARGETS, "cells": cells,
                       "summary": {k: {kk: vv for kk, vv in v.items()} for k, v in summary.items()},
                       "notes": notes}, sys.stdout, indent=1, default=str)
            sys.stdout.write("\n")
        else:
            print_report(meta, cells, summary, notes)
            if a.markdown:
                print_markdown(meta, cells)
    if a.keep_tmp or rc not in (0, 130):
        log(f"temporary directory kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
