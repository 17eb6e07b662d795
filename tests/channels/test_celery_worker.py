"""A real Celery worker with beat (Redis broker, PostgreSQL) runs every periodic job, by the
beat schedule, against fake vendor endpoints on loopback; the effects are in the database.
Needs REDIS_URL and PostgreSQL (the embedded run covers the same jobs with its own runner)."""

import pytest
from django.conf import settings as django_settings

from tests.channels import jobs_scenario

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="a Celery broker needs REDIS_URL (the scale-out run)")


def test_a_worker_with_beat_runs_every_job(vendor, transactional_db, tmp_path):
    from tests.relay.procs import start_worker

    source = jobs_scenario.set_the_scene(vendor)["source"]
    env = {f"JOBS_{name}_EVERY_S": "1" for name in ("PROBE", "THOMPSON", "BALANCE", "PRICING", "RETENTION", "RECONCILE")}
    env.update({"PRICING_SYNC_SOURCE": source, "PRICING_SYNC_APPLY": "true", "PRICING_SYNC_MARKUP": "1.5", "REQUEST_LOG_RETENTION_DAYS": "90"})
    worker = start_worker(tmp_path, with_beat=True, **env)
    try:
        seen = jobs_scenario.wait_for_effects(timeout_s=45)
    finally:
        worker.stop()
    log = worker.log()
    assert seen == {k: True for k in seen}, log
    for task in ("channels.probe_channels", "channels.thompson_refresh", "channels.balance_monitor", "channels.pricing_sync",
                 "channels.retention", "billing.reconcile_holds"):
        assert f"Task {task}[" in log and "succeeded" in log, f"{task} never ran:\n{log}"
