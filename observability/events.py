"""The live stream of routing decisions: one small event per /v1 request, published without
ever making the request wait. `event_publish` puts it in a bounded in-process queue (a full
queue drops it and counts it in `tokenhub_live_events_dropped_total`); one task per event
loop sends the queue in batches to the viewers (observability.broadcast): straight to this
process's on the embedded default, through Redis pub/sub when REDIS_URL is set, so a decision
made by any web process reaches a page open on any other."""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from prometheus_client import Counter

from .broadcast import broadcast_publish

log = logging.getLogger(__name__)

BATCH_MAX = 200  # events per batch sent to the viewers

PUBLISHED = Counter("tokenhub_live_events_published_total", "Routing decisions sent to the live stream")
DROPPED = Counter("tokenhub_live_events_dropped_total", "Routing decisions the live stream dropped", ["reason"])


class _Publisher:
    """The queue and its sending task, bound to one event loop (tests run several in turn)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    def queue_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
        if self.loop is not loop or self.task is None or self.task.done():
            self.loop = loop
            self.queue = asyncio.Queue(maxsize=settings.LIVE_EVENTS_QUEUE_SIZE)
            self.task = loop.create_task(_send_forever(self.queue), name="live-events")
        return self.queue


_publisher = _Publisher()


def events_queued() -> int:
    """Events waiting in this process's queue to be sent."""
    queue = _publisher.queue
    return queue.qsize() if queue is not None else 0


def publisher_reset() -> None:
    """Forget the queue and its sending task (cancelled when it runs on the caller's loop): the
    next event starts a fresh queue, sized by the settings then in force."""
    task = _publisher.task
    _publisher.loop = _publisher.queue = _publisher.task = None
    try:
        is_ours = task is not None and task.get_loop() is asyncio.get_running_loop()
    except RuntimeError:  # no running loop: nothing of ours to cancel
        is_ours = False
    if is_ours:
        task.cancel()


def decision_event(entry: dict) -> dict:
    """The event for one request log entry: what was asked, which routes were considered and
    why, which answered, and how it went. No key, no prompt, no answer."""
    get = entry.get  # an entry written by another path may lack the optional fields
    return {
        "request_id": entry["request_id"],
        "at": entry["created_at"].isoformat(),
        "tenant_id": get("tenant_id"),
        "endpoint": get("endpoint", ""),
        "model": get("model", ""),
        "channel": get("channel_name", ""),
        "status": get("status"),
        "error": get("error_class", ""),
        "candidates": [
            {"channel": c.get("channel"), "eligible": c.get("eligible"), "reason": c.get("reason", "")}
            for c in get("candidates") or ()
        ],
        "attempts": [{"channel": a.get("channel"), "outcome": a.get("outcome")} for a in get("attempts") or ()],
        "latency_ms": get("latency_ms", 0),
        "overhead_ms": get("overhead_ms", 0),
        "cost_micros": get("cost_micros", 0),
        "currency": get("currency", ""),
    }


def event_publish(event: dict) -> None:
    """Queue one event for the live stream; never blocks, never raises."""
    if not settings.LIVE_EVENTS_ENABLED:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        DROPPED.labels("no_event_loop").inc()  # a synchronous caller (a command): nobody to watch
        return
    try:
        _publisher.queue_for(loop).put_nowait(event)
    except asyncio.QueueFull:
        DROPPED.labels("queue_full").inc()


async def _send_forever(queue: asyncio.Queue) -> None:
    """Sends what is queued as one batch per LIVE_EVENTS_INTERVAL_S at most: one Redis PUBLISH
    per batch (or none), not per request."""
    while True:
        batch = [await queue.get()]
        while not queue.empty() and len(batch) < BATCH_MAX:
            batch.append(queue.get_nowait())
        try:
            await broadcast_publish(batch)
            PUBLISHED.inc(len(batch))
        except Exception:
            DROPPED.labels("publish_error").inc(len(batch))
            log.warning("live events: could not publish %d events", len(batch), exc_info=True)
        await asyncio.sleep(settings.LIVE_EVENTS_INTERVAL_S)
