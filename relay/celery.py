"""The Celery app. Broker is Redis when REDIS_URL is set; the embedded default runs the same
periodic jobs in-process (see `routing.jobs`), so no broker is needed there."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relay.settings")

app = Celery("tokenhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _periodic_jobs(sender, **_kwargs) -> None:
    from routing.jobs import beat_schedule  # the one schedule, shared with the embedded runner

    sender.conf.beat_schedule = beat_schedule()
