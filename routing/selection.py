"""Which routes to try, in which order, and why the others were left out.

Priority tiers first (a higher `priority` is tried first; lower ones are the backups, in
order); inside a tier, a weighted random order (each route's chance to go first is its share of
the tier's weight). A channel appears once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import groupby

from .health import board
from .table import Route


@dataclass(frozen=True, slots=True)
class Skipped:
    route: Route
    reason: str


def plan(routes: tuple[Route, ...], *, group: str, rng: random.Random | None = None) -> tuple[list[Route], list[Skipped]]:
    rng = rng or random
    eligible: list[Route] = []
    skipped: list[Skipped] = []
    seen: set[int] = set()
    for route in routes:
        if route.channel_id in seen:
            continue
        seen.add(route.channel_id)
        reason = _why_not(route, group)
        if reason:
            skipped.append(Skipped(route, reason))
        else:
            eligible.append(route)
    ordered: list[Route] = []
    eligible.sort(key=lambda r: -r.priority)
    for _, tier in groupby(eligible, key=lambda r: r.priority):
        ordered.extend(_weighted_order(list(tier), rng))
    return ordered, skipped


def _why_not(route: Route, group: str) -> str:
    if not route.is_enabled:
        return f"disabled ({route.status_reason})" if route.status_reason else "disabled"
    if route.unusable_reason:
        return route.unusable_reason
    if group not in route.groups:
        return f"does not serve group {group!r}"
    cooldown = board.cooldown(route.channel_id)
    if cooldown is not None:
        until = datetime.fromtimestamp(cooldown.until, tz=timezone.utc).isoformat(timespec="seconds")
        return f"cooling down until {until} ({cooldown.reason})"
    return ""


def _weighted_order(tier: list[Route], rng) -> list[Route]:
    if len(tier) == 1:
        return tier
    # Efraimidis–Spirakis: sort by u^(1/w); the first pick is weight-proportional, and so on.
    return sorted(tier, key=lambda r: rng.random() ** (1.0 / r.weight), reverse=True)


def describe_skipped(skipped: list[Skipped]) -> str:
    return "; ".join(f"{s.route.channel_name}: {s.reason}" for s in skipped)
