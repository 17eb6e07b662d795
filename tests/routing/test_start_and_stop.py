"""The relay process's start and stop (the ASGI lifespan): the start freezes what it built for
the garbage collector and, on PostgreSQL, puts the log writers on the event loop; the stop
writes every log still pending, whichever writer held it."""

import asyncio
import gc
from datetime import datetime, timezone

import pytest

from common.db import db_threads_disconnect, loop_connections_close
from observability.models import RequestLog
from observability.services import request_log_submit
from routing.app import GC_YOUNG_THRESHOLD, shutdown, startup

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, scope="module")
def _connections_closed():
    yield
    loop_connections_close()
    db_threads_disconnect()


@pytest.fixture
def collector_restored():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def entry(request_id: str, actor) -> dict:
    return {
        "request_id": request_id, "tenant_id": actor.tenant.id, "key_id": actor.key_id, "endpoint": "chat.completions",
        "model": "m1", "status": 200, "attempts": [], "prompt_tokens": 3, "completion_tokens": 5, "cost_micros": 0,
        "currency": "USD", "latency_ms": 12, "overhead_ms": 0.5, "created_at": datetime(2026, 3, 1, tzinfo=timezone.utc),
    }


def test_the_start_freezes_what_it_built_and_the_stop_writes_what_is_pending(alice, collector_restored):
    seen = {}

    async def serve():
        await startup()
        seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()[0]
        for i in range(3):
            request_log_submit(entry=entry(f"pending-{i}", alice))
        await shutdown()  # well within the writers' interval: nothing was written before

    asyncio.run(serve())

    assert seen["frozen"] > 10_000  # Django and the apps, at least
    assert seen["threshold"] == GC_YOUNG_THRESHOLD
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["pending-0", "pending-1", "pending-2"]
