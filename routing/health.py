"""Channel cooldowns: a channel that failed is skipped until its cooldown ends. Kept in
process memory; shared through Redis when configured (see `health_redis`)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cooldown:
    until: float  # wall-clock seconds (time.time()), comparable across processes
    reason: str


class LocalHealth:
    def __init__(self) -> None:
        self._cooldowns: dict[int, Cooldown] = {}

    def cooldown(self, channel_id: int) -> Cooldown | None:
        entry = self._cooldowns.get(channel_id)
        if entry is None:
            return None
        if entry.until <= time.time():
            self._cooldowns.pop(channel_id, None)
            return None
        return entry

    def cool(self, channel_id: int, *, seconds: float, reason: str) -> Cooldown:
        until = time.time() + seconds
        current = self._cooldowns.get(channel_id)
        if current is not None and current.until >= until:
            return current
        entry = Cooldown(until, reason)
        self._cooldowns[channel_id] = entry
        return entry

    def record_success(self, channel_id: int) -> None:
        self._cooldowns.pop(channel_id, None)

    def clear(self) -> None:
        self._cooldowns.clear()


board = LocalHealth()
