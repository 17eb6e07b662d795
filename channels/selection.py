"""Which routes to try, in which order, and why the others were left out.

    1. each channel once (a channel listed twice for a model is one candidate)
    2. drop what cannot be used, with the reason: disabled (and why), unusable (vault locked,
       base URL refused), not serving the tenant's group, cooling down (until when, and why)
    3. priority tiers, highest first: the backups are lower tiers, in order
    4. inside a tier, the request's mode orders the routes (channels.strategies)

`plan_scored` is pure given its inputs (routes, health view, Thompson arms, randomness), so
the what-if simulator calls it with the same inputs and gets the router's answer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby

from . import strategies, thompson
from .health.board import board
from .health.state import HealthView
from .keys import keys_ranked
from .table import Route


@dataclass(frozen=True, slots=True)
class Skipped:
    route: Route
    reason: str  # the operator's view: channel state, its notes, cooldown reasons
    public: str = ""  # the customer's view, in public terms; "" for a route of another group
    ready_at: float | None = None  # wall clock when a cooling route may be tried again


@dataclass(slots=True)
class Plan:
    mode: str
    model: str
    ordered: list[Route]
    skipped: list[Skipped]
    scores: dict[int, strategies.Scored] = field(default_factory=dict)  # channel id -> its score in its tier
    health: HealthView | None = None

    def explain(self) -> list[dict]:
        """The candidates as the request log keeps them: tried order first, then the skipped."""
        rows = []
        for rank, route in enumerate(self.ordered, start=1):
            scored = self.scores.get(route.channel_id)
            rows.append(
                {
                    "channel": route.channel_name,
                    "eligible": True,
                    "reason": "",
                    "rank": rank,
                    "priority": route.priority,
                    "score": round(scored.score, 6) if scored else None,
                    "state": self.health.state(route.channel_id, self.model) if self.health else "",
                }
            )
        for skipped in self.skipped:
            rows.append(
                {"channel": skipped.route.channel_name, "eligible": False, "reason": skipped.reason, "priority": skipped.route.priority}
            )
        return rows


def plan_scored(
    routes: tuple[Route, ...] | list[Route],
    *,
    group: str,
    model: str = "",
    mode: str = "weighted",
    health: HealthView | None = None,
    arms: thompson.Arms | None = None,
    rand=None,
) -> Plan:
    rand = rand or strategies.rngs()
    eligible: list[Route] = []
    skipped: list[Skipped] = []
    seen: set[int] = set()
    for route in routes:
        if route.channel_id in seen:
            continue
        seen.add(route.channel_id)
        reason = _why_not(route, group, model, health)
        if reason:
            skipped.append(Skipped(route, reason, *_public_why_not(route, group, model, health)))
        else:
            eligible.append(route)
    if mode == "thompson" and arms is None:
        arms = thompson.arms_get()
    ordered: list[Route] = []
    scores: dict[int, strategies.Scored] = {}
    eligible.sort(key=lambda r: -r.priority)  # stable: table order inside a tier
    for _, tier in groupby(eligible, key=lambda r: r.priority):
        for scored in strategies.order_tier(list(tier), mode=mode, model=model, health=health, arms=arms, rand=rand):
            ordered.append(scored.route)
            scores[scored.route.channel_id] = scored
    return Plan(mode, model, ordered, skipped, scores, health)


async def plan_for(routes: tuple[Route, ...], *, group: str, model: str, mode: str) -> Plan:
    """The router's plan: one health read (at most one Redis round trip), the Thompson arms
    from memory when the mode needs them."""
    health = await board.aview(model, [r.channel_id for r in routes], route_upstream_keys(routes))
    arms = await thompson.arms_aget() if mode == "thompson" else None
    return plan_scored(routes, group=group, model=model, mode=mode, health=health, arms=arms)


def route_upstream_keys(routes) -> list[tuple[int, str]]:
    """(channel id, fingerprint) of every key of the multi-key routes: the health records to read."""
    found: dict[tuple[int, str], None] = {}
    for route in routes:
        if route.is_multikey:
            found.update(((route.channel_id, fp), None) for fp in route.key_fps)
    return list(found)


def keys_ready(route: Route, health: HealthView | None) -> list[int]:
    """The positions of a route's keys that may be used now: not disabled, not cooling. A
    one-key channel's key is always "ready" here (its health is the channel's)."""
    if not route.is_multikey:
        return list(range(len(route.api_keys))) or [0]
    return [
        i for i, fp in enumerate(route.key_fps)
        if fp not in route.disabled_keys and (health is None or health.key_cooldown(route.channel_id, fp) is None)
    ]


def keys_ordered(route: Route, health: HealthView | None, session: str) -> list[int]:
    """The ready keys of a route, this session's best first (channels.keys: rendezvous)."""
    if not route.is_multikey:
        return [0]
    ready = set(keys_ready(route, health))
    return [i for i in keys_ranked(route.key_fps, session) if i in ready]


def _keys_cooling(route: Route, health: HealthView | None):
    """For a multi-key route with no ready key: (why, the earliest a key is ready again or None
    when every key is disabled, the soonest key cooldown)."""
    live = [fp for fp in route.key_fps if fp not in route.disabled_keys]
    if not live:
        return f"every upstream key is disabled ({len(route.key_fps)} of {len(route.key_fps)})", None, None
    records = [health.key_cooldown(route.channel_id, fp) for fp in live] if health is not None else []
    records = [r for r in records if r is not None]
    if len(records) < len(live):
        return "", None, None
    soonest = min(records, key=lambda r: r.until)
    until = datetime.fromtimestamp(soonest.until, tz=timezone.utc).isoformat(timespec="seconds")
    disabled = f", {len(route.disabled_keys)} disabled" if route.disabled_keys else ""
    return f"cooling down until {until} (every upstream key: {len(records)} cooling{disabled}; {soonest.reason})", soonest.until, soonest


def _why_not(route: Route, group: str, model: str, health: HealthView | None) -> str:
    if not route.is_enabled:
        return f"disabled ({route.status_reason})" if route.status_reason else "disabled"
    if route.unusable_reason:
        return route.unusable_reason
    if group not in route.groups:
        return f"does not serve group {group!r}"
    cooldown = health.cooldown(route.channel_id, model) if health is not None else None
    if cooldown is not None:
        until = datetime.fromtimestamp(cooldown.until, tz=timezone.utc).isoformat(timespec="seconds")
        scope = "" if cooldown.scope == "channel" else f" for {model}"
        streak = f", failure {cooldown.strikes} in a row" if cooldown.strikes > 1 else ""
        return f"cooling down{scope} until {until} ({cooldown.reason}{streak})"
    if route.is_multikey:
        return _keys_cooling(route, health)[0]
    return ""


_COOLING_CAUSES = {
    "rate_limited": " after a rate limit",
    "transient": " after upstream errors",
    "auth": " after the upstream refused it",
    "quota": " after the upstream refused it",
    "manual": " for maintenance",
}


def _public_why_not(route: Route, group: str, model: str, health: HealthView | None) -> tuple[str, float | None]:
    """What a customer of `group` may read about a skipped route: no names, addresses or
    operator notes. ("", None) for a route that does not serve the group: not theirs to see."""
    if group not in route.groups:
        return "", None
    if not route.is_enabled:
        automatic = route.status_reason.startswith("auto:")
        return ("disabled after upstream failures" if automatic else "disabled by the operator"), None
    if route.unusable_reason:
        return "not usable at the moment", None
    cooldown = health.cooldown(route.channel_id, model) if health is not None else None
    if cooldown is not None:
        seconds = max(1, math.ceil(cooldown.until - time.time()))
        return f"cooling down for {seconds} s{_COOLING_CAUSES.get(cooldown.kind, '')}", cooldown.until
    if route.is_multikey:
        why, ready_at, soonest = _keys_cooling(route, health)
        if why and soonest is None:
            return "disabled after upstream failures", None
        if soonest is not None:
            seconds = max(1, math.ceil(soonest.until - time.time()))
            return f"cooling down for {seconds} s{_COOLING_CAUSES.get(soonest.kind, '')}", ready_at
    return "", None


def describe_skipped(skipped: list[Skipped]) -> str:
    """The operator's explanation (request log, admin, simulator)."""
    return "; ".join(f"{s.route.channel_name}: {s.reason}" for s in skipped)


def describe_for_customer(skipped: list[Skipped]) -> str:
    """The customer's explanation: their group's candidates, numbered, in public terms."""
    return "; ".join(f"candidate {n}: {s.public}" for n, s in enumerate((s for s in skipped if s.public), start=1))


def first_ready_at(skipped: list[Skipped]) -> float | None:
    """When the first of the customer's candidates may be tried again, if every one of them is
    only cooling down (a disabled one will not come back by waiting)."""
    mine = [s for s in skipped if s.public]
    if not mine or any(s.ready_at is None for s in mine):
        return None
    return min(s.ready_at for s in mine)
