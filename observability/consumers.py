"""The admin's live view of routing decisions: a WebSocket that staff with permission to view
request logs may join; it forwards each event of observability.events as one JSON message."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .events import GROUP

CLOSE_FORBIDDEN = 4403


def _may_watch(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm("observability.view_requestlog"))


class RoutingDecisionConsumer(AsyncJsonWebsocketConsumer):
    groups = []  # joined only after the permission check

    async def connect(self) -> None:
        if not await database_sync_to_async(_may_watch)(self.scope.get("user")):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def routing_decisions(self, message: dict) -> None:
        for event in message["events"]:  # one WebSocket message per decision
            await self.send_json(event)
