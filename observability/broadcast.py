"""Fan-out of live routing decisions to the WebSocket viewers of every web process.

`broadcast_publish(events)` sends a batch; `broadcast_subscribe()` is an async context that
yields a queue of batches for one viewer. With REDIS_URL a batch is one PUBLISH on a namespaced
pub/sub channel (common.redis), and each process that has viewers keeps one subscriber task per
event loop that hands batches to its local viewers; without Redis (the embedded default, one
process) batches go straight to the local viewers. A slow viewer's queue is bounded: it loses
batches (counted), never holds up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

import orjson
from prometheus_client import Counter

from common import redis as shared_redis

log = logging.getLogger(__name__)

VIEWER_QUEUE_MAX = 100  # batches a viewer may lag behind before it loses some
VIEWER_DROPPED = Counter("tokenhub_live_viewer_batches_dropped_total", "Live batches a slow viewer did not get")

_viewers: dict[int, set[asyncio.Queue]] = {}  # event loop id -> its viewers' queues
_listeners: dict[int, asyncio.Task] = {}  # event loop id -> its Redis subscriber task
_owners: dict[int, weakref.ref] = {}  # event loop id -> the loop itself (an id outlives its loop)


def _channel() -> str:
    return shared_redis.key("live", "routing-decisions")


def _deliver(loop_id: int, batch: list[dict]) -> None:
    for queue in list(_viewers.get(loop_id, ())):
        try:
            queue.put_nowait(batch)
        except asyncio.QueueFull:
            VIEWER_DROPPED.inc()


async def broadcast_publish(batch: list[dict]) -> None:
    client = shared_redis.client_async()
    if client is None:
        _deliver(id(asyncio.get_running_loop()), batch)
        return
    await client.publish(_channel(), orjson.dumps(batch))


async def _listen(loop_id: int) -> None:
    """This loop's one Redis subscriber, while it has viewers."""
    while _viewers.get(loop_id):
        try:
            client = shared_redis.client_async()
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(_channel())
                while _viewers.get(loop_id):
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        _deliver(loop_id, orjson.loads(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("live view lost Redis; retrying in 1s", exc_info=True)
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def broadcast_subscribe():
    loop = asyncio.get_running_loop()
    loop_id = id(loop)
    queue: asyncio.Queue = asyncio.Queue(maxsize=VIEWER_QUEUE_MAX)
    owner = _owners.get(loop_id)
    if owner is None or owner() is not loop:
        # the first viewer of this loop; or a closed loop had this address: its viewers and
        # listener went with it (a listener of a closed loop never runs again)
        _owners[loop_id] = weakref.ref(loop)
        _viewers[loop_id] = set()
        _listeners.pop(loop_id, None)
    _viewers.setdefault(loop_id, set()).add(queue)
    if shared_redis.client_async() is not None:
        task = _listeners.get(loop_id)
        if task is None or task.done():
            _listeners[loop_id] = loop.create_task(_listen(loop_id), name="live-listener")
            await asyncio.sleep(0.05)  # let the subscription start before the viewer is told it is on
    try:
        yield queue
    finally:
        mine = _viewers.get(loop_id)
        if mine is not None:
            mine.discard(queue)
            if not mine:
                _viewers.pop(loop_id, None)

