"""A relay with a `simulated` channel and price, and research runs that call it over HTTP."""

from __future__ import annotations

import pytest

from tests.conftest import make_channel, make_price


@pytest.fixture
def research_relay(relay, settings):
    make_price("sim-model", "1", "2")
    make_channel("sim", "simulated://demo", provider_type="simulated", models=["sim-model"])
    settings.RESEARCH_RELAY_URL = relay.url + "/v1"
    settings.RESEARCH_DISPATCH = "thread"
    return relay


def wait_until_done(run_id: int, timeout_s: float = 60.0):
    import time

    from django.db import close_old_connections

    from research.models import ResearchRun

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = ResearchRun.objects.get(pk=run_id)
        if not run.is_active:
            return run
        close_old_connections()
        time.sleep(0.1)
    raise AssertionError(f"research run {run_id} still {run.status} after {timeout_s}s")
