"""The Celery app and the periodic jobs' schedule. Broker is Redis when REDIS_URL is set; the
embedded default runs the same schedule in the web process (`relay.jobs`), so no broker is
needed there."""

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")

app = Celery("tokenhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# name: (Celery task name, setting holding the interval in seconds)
SCHEDULE = {
    "probe-channels": ("channels.probe_channels", "JOBS_PROBE_EVERY_S"),
    "thompson-refresh": ("channels.thompson_refresh", "JOBS_THOMPSON_EVERY_S"),
    "balance-monitor": ("channels.balance_monitor", "JOBS_BALANCE_EVERY_S"),
    "pricing-sync": ("channels.pricing_sync", "JOBS_PRICING_EVERY_S"),
    "retention": ("channels.retention", "JOBS_RETENTION_EVERY_S"),
    "reconcile-holds": ("billing.reconcile_holds", "JOBS_RECONCILE_EVERY_S"),
    "idempotency-prune": ("routing.idempotency_prune", "JOBS_RETENTION_EVERY_S"),
    "alerts": ("billing.alerts", "JOBS_ALERTS_EVERY_S"),  # low-balance and channel alerts
    "research-reap": ("research.reap_stale", "JOBS_RESEARCH_REAP_EVERY_S"),  # runs whose worker died
}


def beat_schedule() -> dict:
    """Celery's `beat_schedule`: every job at its interval; a run that cannot start within
    one interval is dropped rather than piled up."""
    schedule = {}
    for name, (task, setting) in SCHEDULE.items():
        every_s = float(getattr(settings, setting))
        schedule[name] = {"task": task, "schedule": every_s, "options": {"expires": every_s}}
    return schedule


@app.on_after_configure.connect
def _periodic_jobs(sender, **_kwargs) -> None:
    sender.conf.beat_schedule = beat_schedule()
