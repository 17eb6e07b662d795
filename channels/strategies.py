"""How routes of one priority tier are ordered: the routing modes.

    weighted         random, each route's chance to go first is its share of the tier's
                     weight (the default)
    lowest_cost      cheapest `cost_ratio` first
    lowest_latency   fastest mean latency over the health window first
    cheap, normal,   multi-objective: a score from four terms, each 0 (best) .. 1 (worst),
    high_confidence, weighted per mode (MODE_WEIGHTS, overridable by ROUTING_MODE_WEIGHTS):
    planning           cost      cost_ratio / the tier's highest
                       weight    1 - weight / the tier's highest (the operator's preference)
                       latency   mean latency / the tier's highest (unknown: the tier's mean)
                       failure   smoothed failure rate, (failures + 1) / (attempts + 10)
                     score = 1 - sum(mode weight x term); higher goes first
    thompson         a draw from each route's Beta posterior of success (channels.thompson)

Ties (and `weighted` itself) are broken by an Efraimidis–Spirakis key u^(1/weight), one draw
per route in table order, so that the same seed gives the same order: the simulator relies on
it. The mode comes from the `X-TokenHub-Mode` header, else the key's mode, else its tenant
group's, else ROUTING_DEFAULT_MODE.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from billing.ratecard import ratecard_aget, ratecard_get

log = logging.getLogger(__name__)

MULTI_OBJECTIVE = ("cheap", "normal", "high_confidence", "planning")
MODES = ("weighted", "lowest_cost", "lowest_latency", *MULTI_OBJECTIVE, "thompson")
MODE_WEIGHTS = {
    # cost matters most; a little care for reliability
    "cheap": {"cost": 0.7, "weight": 0.1, "latency": 0.1, "failure": 0.1},
    "normal": {"cost": 0.25, "weight": 0.25, "latency": 0.25, "failure": 0.25},
    # reliability above all; price hardly counts
    "high_confidence": {"cost": 0.0, "weight": 0.2, "latency": 0.1, "failure": 0.7},
    # long multi-step work: the operator's preferred (stronger) channels and reliability; speed no
    "planning": {"cost": 0.2, "weight": 0.3, "latency": 0.0, "failure": 0.5},
}
TERMS = ("cost", "weight", "latency", "failure")


def mode_weights(mode: str) -> dict[str, float]:
    weights = dict(MODE_WEIGHTS[mode])
    weights.update({k: float(v) for k, v in (settings.ROUTING_MODE_WEIGHTS.get(mode) or {}).items() if k in TERMS})
    return weights


# --- randomness: one source for the router, re-seedable so a simulation can replay it ------


class _Random:
    def __init__(self) -> None:
        self.seed(settings.ROUTING_RANDOM_SEED)

    def seed(self, seed: int | None) -> None:
        self.py = random.Random(seed)
        self.np = np.random.default_rng(seed)


_random: _Random | None = None


def rngs() -> _Random:
    global _random
    if _random is None:
        _random = _Random()
    return _random


def rng_seed(seed: int | None) -> None:
    """Re-seed the router's randomness (tests, and reproducing a simulation)."""
    rngs().seed(seed)


def seeded(seed: int | None) -> _Random:
    made = _Random.__new__(_Random)
    made.seed(seed)
    return made


# --- the mode of a request ------------------------------------------------------------------


class UnknownMode(ValueError):
    """A routing mode that does not exist; the message says which ones do (routing maps it to a 400)."""


def mode_check(value: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise UnknownMode(f"Unknown X-TokenHub-Mode {value!r}; use one of: {', '.join(MODES)}.")
    return mode


async def mode_for(*, header: str | None, key_mode: str, group: str) -> str:
    """Header > key > group > default. A bad header is the client's error (400); a bad stored
    mode is the operator's, logged and replaced by the default."""
    if header is not None and header.strip():
        return mode_check(header)
    for source, value in (("key", key_mode), ("group", (await ratecard_aget()).group_modes.get(group, ""))):
        if value:
            if value in MODES:
                return value
            log.warning("ignoring unknown routing mode %r set on a %s", value, source)
    return settings.ROUTING_DEFAULT_MODE


def mode_for_sync(*, key_mode: str = "", group: str = "default", header: str | None = None) -> str:
    if header is not None and header.strip():
        return mode_check(header)
    for value in (key_mode, ratecard_get().group_modes.get(group, "")):
        if value in MODES:
            return value
    return settings.ROUTING_DEFAULT_MODE


# --- ordering a tier ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    route: object  # channels.table.Route
    score: float
    terms: dict  # what the score was made of, for explanations


def order_tier(tier: list, *, mode: str, model: str, health, arms, rand: _Random) -> list[Scored]:
    """The tier's routes, best first, each with its score."""
    tiebreak = [rand.py.random() ** (1.0 / max(1, r.weight)) for r in tier]
    if mode == "weighted":
        scored = [Scored(r, key, {}) for r, key in zip(tier, tiebreak)]
    elif mode == "lowest_cost":
        scored = [Scored(r, -float(r.cost_ratio), {"cost_ratio": float(r.cost_ratio)}) for r in tier]
    elif mode == "lowest_latency":
        latencies = _latencies(tier, model, health)
        scored = [Scored(r, -lat, {"latency_ms": round(lat, 1)}) for r, lat in zip(tier, latencies)]
    elif mode == "thompson":
        params = [arms.posterior(r.channel_id, model) for r in tier]
        draws = rand.np.beta([a for a, _ in params], [b for _, b in params])
        scored = [
            Scored(r, float(d), {"alpha": round(a, 3), "beta": round(b, 3), "mean": round(a / (a + b), 4)})
            for r, d, (a, b) in zip(tier, draws, params)
        ]
    else:
        scored = _multi_objective(tier, mode=mode, model=model, health=health)
    ranked = sorted(zip(scored, tiebreak), key=lambda pair: (pair[0].score, pair[1]), reverse=True)
    return [s for s, _ in ranked]


def _latencies(tier: list, model: str, health) -> list[float]:
    known = [health.pair(r.channel_id, model).latency_ms if health else None for r in tier]
    seen = [k for k in known if k is not None]
    fallback = sum(seen) / len(seen) if seen else 0.0
    return [k if k is not None else fallback for k in known]


def _multi_objective(tier: list, *, mode: str, model: str, health) -> list[Scored]:
    weights = mode_weights(mode)
    latencies = _latencies(tier, model, health)
    max_cost = max(float(r.cost_ratio) for r in tier) or 1.0
    max_weight = max(r.weight for r in tier) or 1
    max_latency = max(latencies) or 1.0
    scored = []
    for route, latency in zip(tier, latencies):
        stats = health.pair(route.channel_id, model) if health else None
        attempts, failures = (stats.attempts, stats.failures) if stats else (0.0, 0.0)
        terms = {
            "cost": float(route.cost_ratio) / max_cost,
            "weight": 1.0 - route.weight / max_weight,
            "latency": latency / max_latency,
            "failure": (failures + 1.0) / (attempts + 10.0),
        }
        score = 1.0 - sum(weights[t] * terms[t] for t in TERMS)
        scored.append(Scored(route, round(score, 9), {t: round(v, 4) for t, v in terms.items()}))
    return scored

