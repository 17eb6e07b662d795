"""Without a broker, the web process runs the periodic jobs itself (relay.jobs.Runner): the
same task functions, on the same schedule. Here every interval is shortened."""

import time

from tests.channels import jobs_scenario


def test_the_embedded_runner_runs_every_job(vendor, transactional_db, settings):
    from relay.jobs import SCHEDULE, Runner

    for name, value in jobs_scenario.SETTINGS.items():
        setattr(settings, name, value)
    settings.PRICING_SYNC_SOURCE = jobs_scenario.set_the_scene(vendor)["source"]
    runner = Runner(intervals={name: 0.3 for name in SCHEDULE}, first_delay_s=0)
    runner.start(lock=False)
    try:
        seen = jobs_scenario.wait_for_effects(timeout_s=20)
        # every effect seen does not mean every job has had its turn yet (on a busy machine the
        # runner may still be on its first round): wait for that too, then look at each
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(job.runs >= 1 for job in runner.jobs.values()):
            time.sleep(0.05)
    finally:
        runner.stop()
    assert seen == {k: True for k in seen}
    assert all(job.runs >= 1 and not job.last_error for job in runner.jobs.values()), {
        j.name: (j.runs, j.last_error) for j in runner.jobs.values()
    }
    assert runner.jobs["reconcile-holds"].runs >= 1


def test_it_starts_only_without_a_broker(settings):
    from relay import jobs

    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    assert jobs.is_embedded_wanted()
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert not jobs.is_embedded_wanted()
    settings.CELERY_BROKER_URL = "memory://"
    settings.EMBEDDED_JOBS = False
    assert not jobs.is_embedded_wanted()


def test_one_process_per_machine_runs_the_jobs(settings, tmp_path):
    from relay.jobs import Runner

    settings.VAR_DIR = tmp_path
    first, second = Runner(first_delay_s=3600), Runner(first_delay_s=3600)
    assert first.start() is True
    try:
        assert second.start() is False  # the lock is held
    finally:
        first.stop()
    assert second.start() is True
    second.stop()


def test_beat_schedule_covers_every_job(settings):
    from relay.celery import app
    from relay.jobs import beat_schedule

    settings.JOBS_PROBE_EVERY_S = 42
    schedule = beat_schedule()
    assert schedule["probe-channels"] == {"task": "channels.probe_channels", "schedule": 42.0, "options": {"expires": 42.0}}
    app.loader.import_default_modules()
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)
