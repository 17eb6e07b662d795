"""The periodic jobs' schedule, and the embedded runner that keeps it without a broker.

With REDIS_URL (or CELERY_BROKER_URL) set, Celery beat sends these tasks on this schedule
(`relay.celery` holds it), and workers run them. Without a broker (the
embedded default of `make run`) the web process runs the same task functions in one thread on
the same schedule; a file lock in TOKENHUB_VAR_DIR makes sure that only one process on the
machine does, however many web workers there are.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

from relay.celery import SCHEDULE, app, beat_schedule  # noqa: F401  (the one schedule; re-exported)


def has_broker() -> bool:
    return bool(settings.REDIS_URL) or not settings.CELERY_BROKER_URL.startswith("memory://")


def is_embedded_wanted() -> bool:
    return settings.EMBEDDED_JOBS and not has_broker()


def _task_function(task_name: str):
    """The plain function behind a Celery task (the runner calls it directly, no broker)."""
    import billing.tasks  # noqa: F401  (each import registers that app's tasks)
    import channels.tasks  # noqa: F401
    import routing.tasks  # noqa: F401
    import research.tasks  # noqa: F401

    return app.tasks[task_name].run


@dataclass
class JobState:
    name: str
    task: str
    every_s: float
    next_at: float
    runs: int = 0
    last_started_at: float | None = None
    last_duration_s: float | None = None
    last_result: object = None
    last_error: str = ""


class Runner:
    """Runs due jobs one after another in a daemon thread until `stop()`."""

    def __init__(self, *, intervals: dict[str, float] | None = None, first_delay_s: float | None = None) -> None:
        now = time.monotonic()
        self.jobs: dict[str, JobState] = {}
        for name, (task, setting) in SCHEDULE.items():
            every_s = float((intervals or {}).get(name, getattr(settings, setting)))
            delay = every_s if first_delay_s is None else first_delay_s
            self.jobs[name] = JobState(name, task, every_s, now + delay)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file = None

    def start(self, *, lock: bool = True) -> bool:
        """Start unless another process on this machine runs the jobs already."""
        if lock and not self._take_lock():
            log.info("periodic jobs already run by another process here")
            return False
        self._thread = threading.Thread(target=self._loop, name="tokenhub-jobs", daemon=True)
        self._thread.start()
        log.info("periodic jobs run in this process (no broker configured)")
        return True

    def _take_lock(self) -> bool:
        import fcntl

        path = settings.VAR_DIR / "jobs.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle  # held (and the lock with it) until stop() or exit
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def run_due(self) -> list[str]:
        """Run every job that is due now; returns their names."""
        from django.db import close_old_connections

        ran = []
        for job in self.jobs.values():
            if self._stop.is_set() or job.next_at > time.monotonic():
                continue
            started = time.monotonic()
            job.last_started_at = time.time()
            try:
                job.last_result = _task_function(job.task)()
                job.last_error = ""
            except Exception as exc:
                job.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("periodic job %s failed", job.name)
            finally:
                close_old_connections()
            job.runs += 1
            job.last_duration_s = time.monotonic() - started
            job.next_at = started + job.every_s
            ran.append(job.name)
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            next_at = min(job.next_at for job in self.jobs.values())
            self._stop.wait(max(0.05, min(next_at - time.monotonic(), 5.0)))


_runner: Runner | None = None


def embedded_start() -> Runner | None:
    """Start the embedded runner when no broker is configured (web process startup)."""
    global _runner
    if _runner is not None or not is_embedded_wanted():
        return _runner
    runner = Runner(first_delay_s=30.0)
    if runner.start():
        _runner = runner
    return _runner


def embedded_stop() -> None:
    global _runner
    if _runner is not None:
        _runner.stop()
        _runner = None
