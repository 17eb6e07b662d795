from celery import shared_task
from django.conf import settings


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
