"""What-if: how would the router order the candidates of a model for a group and mode, right
now? Nothing is sent. The simulator calls the router's own planning function
(`selection.plan_scored`) with the same routes, health, Thompson arms and, given the same
seed, the same random draws: the router re-seeded with that seed makes the same choice
(`strategies.rng_seed`, or ROUTING_RANDOM_SEED at start).
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import strategies, thompson
from .health.board import board
from .selection import plan_scored, route_upstream_keys
from .table import table_build


def simulate(*, model: str, group: str = "default", mode: str | None = None, seed: int | None = None, key_mode: str = "") -> dict:
    """Ranked candidates with their scores and the skipped ones with reasons."""
    table = table_build()
    info = table.resolve(model)
    if info is None:
        raise ValueError(f"no model or alias named {model!r}")
    mode = strategies.mode_check(mode) if mode else strategies.mode_for_sync(key_mode=key_mode, group=group)
    routes = table.routes.get(info.public_id, ())
    health = board.view(info.public_id, [r.channel_id for r in routes], fresh=True, upstream_keys=route_upstream_keys(routes))
    arms = thompson.arms_get() if mode == "thompson" else None
    rand = strategies.seeded(seed) if seed is not None else strategies.seeded(None)
    planned = plan_scored(routes, group=group, model=info.public_id, mode=mode, health=health, arms=arms, rand=rand)
    candidates = []
    for rank, route in enumerate(planned.ordered, start=1):
        scored = planned.scores[route.channel_id]
        candidates.append({**_route_facts(route, info.public_id, health), "rank": rank, "eligible": True, "reason": "",
                           "score": round(scored.score, 6), "terms": scored.terms})
    for skipped in planned.skipped:
        candidates.append({**_route_facts(skipped.route, info.public_id, health), "rank": None, "eligible": False,
                           "reason": skipped.reason, "score": None, "terms": {}})
    return {
        "model": info.public_id,
        "group": group,
        "mode": mode,
        "seed": seed,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "choice": planned.ordered[0].channel_name if planned.ordered else None,
        "candidates": candidates,
    }


def _route_facts(route, model: str, health) -> dict:
    stats = health.pair(route.channel_id, model)
    cooldown = health.cooldown(route.channel_id, model)
    return {
        "channel": route.channel_name,
        "channel_id": route.channel_id,
        "provider_type": route.provider_type,
        "brand": route.brand,
        "upstream_model": route.upstream_model,
        "priority": route.priority,
        "weight": route.weight,
        "cost_ratio": str(route.cost_ratio),
        "state": health.state(route.channel_id, model),
        "cooling_until": datetime.fromtimestamp(cooldown.until, tz=timezone.utc).isoformat(timespec="seconds") if cooldown else None,
        "attempts": round(stats.attempts, 2),
        "failure_rate": round(stats.failure_rate, 4),
        "latency_ms": round(stats.latency_ms, 1) if stats.latency_ms is not None else None,
    }


def route_tree() -> list[dict]:
    """Channel type -> brand -> channel -> models, each model with its primary/backup order:
    the operator's map of where traffic can go. Health is read once per model."""
    table = table_build()
    order: dict[str, list] = {}
    for public_id, routes in table.routes.items():
        tiers = sorted({r.priority for r in routes}, reverse=True)
        health = board.view(public_id, [r.channel_id for r in routes], fresh=True, upstream_keys=route_upstream_keys(routes))
        for route in routes:
            position = tiers.index(route.priority)
            order.setdefault(route.channel_id, []).append(
                {
                    "model": public_id,
                    "upstream_model": route.upstream_model,
                    "role": "primary" if position == 0 else f"backup {position}",
                    "is_enabled": route.is_enabled,
                    "state": health.state(route.channel_id, public_id) if route.is_enabled else "disabled",
                    "peers": [r.channel_name for r in sorted(routes, key=lambda r: -r.priority) if r.channel_id != route.channel_id],
                }
            )
    records = board.records()
    tree: dict[str, dict[str, list]] = {}
    seen: set[int] = set()
    for public_id, routes in sorted(table.routes.items()):
        for route in routes:
            if route.channel_id in seen:
                continue
            seen.add(route.channel_id)
            tree.setdefault(route.provider_type, {}).setdefault(route.brand, []).append(
                {
                    "channel": route.channel_name,
                    "channel_id": route.channel_id,
                    "priority": route.priority,
                    "weight": route.weight,
                    "groups": sorted(route.groups),
                    "billing": route.billing,
                    "is_enabled": route.is_enabled,
                    "status_reason": route.status_reason,
                    "unusable_reason": route.unusable_reason,
                    "cooldown": _cooldown_text(route.channel_id, records),
                    "models": sorted(order.get(route.channel_id, []), key=lambda m: m["model"]),
                }
            )
    return [
        {"type": provider_type, "brands": [{"brand": brand, "channels": sorted(channels, key=lambda c: (-c["priority"], c["channel"]))}
                                           for brand, channels in sorted(brands.items())]}
        for provider_type, brands in sorted(tree.items())
    ]


def _cooldown_text(channel_id: int, records) -> str:
    """The channel's own cooldown, and how many of its routes cool."""
    now = datetime.now(timezone.utc).timestamp()
    own = records.get(f"c:{channel_id}")
    routes = sum(1 for k, r in records.items() if k.startswith(f"p:{channel_id}:") and r.until > now)
    parts = []
    if own is not None and own.until > now:
        until = datetime.fromtimestamp(own.until, tz=timezone.utc).isoformat(timespec="seconds")
        parts.append(f"cooling until {until} ({own.reason})")
    if routes:
        parts.append(f"{routes} model route(s) cooling")
    return "; ".join(parts)
