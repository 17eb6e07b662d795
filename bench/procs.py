"""Process helpers for the benchmark: start in an own session, CPU counters, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psutil

_STARTED: list["Managed"] = []
# loopback only: never through an HTTP proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Managed:
    """A child process started in its own session (so its process group id is its pid and a
    terminal's Ctrl-C reaches only us); stop() ends that group: the process and its workers."""

    def __init__(self, name: str, argv: list[str], env: dict, cwd: str, log_path: str, stdout=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.ps = psutil.Process(self.pid)
        self._known: dict[int, psutil.Process] = {self.pid: self.ps}
        _STARTED.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The process and all its descendants (workers), remembered across calls."""
        try:
            for c in self.ps.children(recursive=True):
                self._known.setdefault(c.pid, c)
        except psutil.Error:
            pass
        return list(self._known.values())

    def cpu(self) -> dict[int, float]:
        """user+system CPU seconds per process of this group (live ones)."""
        out = {}
        for p in self.processes():
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def stop(self, timeout: float = 8.0) -> None:
        if self in _STARTED:
            _STARTED.remove(self)
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # anything of the group still there (workers that outlived their master, or a stuck one)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(2)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def log_tail(self, n_bytes: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - n_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def stop_all() -> None:
    for m in list(reversed(_STARTED)):
        try:
            m.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def wait_http(url: str, proc: Managed, timeout: float) -> tuple[bool, str]:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            return False, f"{proc.name} exited with status {proc.popen.returncode}"
        try:
            with _OPENER.open(url, timeout=2) as r:
                if r.status == 200:
                    return True, ""
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read()[:200]!r}"
        except (urllib.error.URLError, OSError) as e:
            last = repr(e)
        time.sleep(0.2)
    return False, f"no 200 from {url} within {timeout:.0f}s (last: {last})"
