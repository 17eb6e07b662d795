"""Real processes for the scale-out tests: web servers and Celery workers started from this
checkout against the test database and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database the tests run on (the test database, not the configured one)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("real processes share PostgreSQL only")
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def environment(**extra: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "TOKENHUB_UPSTREAM_ALLOW_CIDRS": "127.0.0.0/8",
            "EMBEDDED_JOBS": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def start_web(tmp_path: Path, name: str, **env: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "uvicorn", "relay.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        environment(**env),
        tmp_path / f"{name}.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited: {proc.log()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{name} did not start: {proc.log()}")


def start_worker(tmp_path: Path, *, with_beat: bool, **env: str) -> Proc:
    args = [sys.executable, "-m", "celery", "-A", "relay", "worker", "-P", "solo", "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if with_beat:
        args += ["-B", "-s", str(tmp_path / "beat-schedule")]
    return Proc(args, environment(**env), tmp_path / "worker.log")
