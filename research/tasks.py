import logging
import threading

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, transaction

log = logging.getLogger(__name__)


@shared_task(name="research.run")
def run(run_id: int) -> str:
    """Carry out one research run (see research.services.research_run_execute)."""
    from .services import research_run_execute  # tasks are imported by Celery before apps are ready

    return research_run_execute(run_id=run_id)


@shared_task(name="research.reap_stale")
def reap_stale() -> dict:
    """Mark failed the runs whose worker stopped sending heartbeats."""
    from .services import research_runs_reap

    return {"failed": research_runs_reap(older_than_s=settings.RESEARCH_STALE_AFTER_S)}


_run_task = run  # the task, under a name the dispatcher's `run` argument does not hide


def research_run_dispatch(*, run) -> None:
    """Hand the run to a Celery worker when a broker is configured; otherwise (the embedded
    default) run it in a daemon thread of this process, so the page stays responsive. Here,
    beside the task, so that services never import tasks (tasks import services)."""
    how = settings.RESEARCH_DISPATCH
    has_broker = bool(settings.REDIS_URL) or not settings.CELERY_BROKER_URL.startswith("memory://")  # as relay.jobs says
    if how == "celery" or (how == "auto" and has_broker):
        run_id = run.pk
        transaction.on_commit(lambda: _run_task.delay(run_id))
        return
    thread = threading.Thread(target=_run_in_thread, args=(run.pk,), name=f"research-{run.pk}", daemon=True)
    transaction.on_commit(thread.start)


def _run_in_thread(run_id: int) -> None:
    from .services import research_run_execute

    try:
        research_run_execute(run_id=run_id)
    except Exception:
        log.exception("research run %s crashed", run_id)
    finally:
        close_old_connections()
