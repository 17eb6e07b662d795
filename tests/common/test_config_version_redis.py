"""With Redis, requests that arrive together share one read of the configuration version, and a
change is still seen by every request that arrives after it (issue 10: one GET per request was a
tenth of the event loop's CPU at c=32)."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from common import redis as shared_redis
from common.config_version import config_sync

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the version lives in Redis only when REDIS_URL is set"),
]


def _gets_served() -> int:
    stats = shared_redis.client_sync().info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def _synced_once() -> None:
    await config_sync()  # warm: the client connects, the version is seen


async def test_requests_arriving_together_share_reads():
    await _synced_once()
    before = _gets_served()
    await asyncio.gather(*(config_sync() for _ in range(32)))
    # the first request's GET, then one shared by the 31 that arrived while it was on its way
    assert _gets_served() - before <= 2


async def test_requests_one_after_another_each_read_again():
    await _synced_once()
    before = _gets_served()
    for _ in range(5):
        await config_sync()
    assert _gets_served() - before == 5


async def test_a_cancelled_request_takes_no_other_with_it():
    """(That a change made by another process is seen by the next request is held by
    tests/accounts/test_key_policy_cache.py, which runs this path in the scale pass.)"""
    await _synced_once()
    before = _gets_served()
    gone = asyncio.ensure_future(config_sync())
    others = [asyncio.ensure_future(config_sync()) for _ in range(8)]
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await gone
    await config_sync()  # and the next one reads again
    assert _gets_served() - before >= 2
