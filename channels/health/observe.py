"""What follows one upstream attempt (the journey calls `attempt_observe` for each): health,
the reward log and the sampler's live counts; and, in the background, disabling the channel when
the upstream refused its credential or balance. On a channel with several upstream keys the
attempt names the key it used (`key_index`): a refusal that is the key's (auth, quota, 429) cools
that key alone, and auth/quota disable that key alone until none is left (channels.keys)."""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async

from common import background
from providers.base import ErrorKind, ProviderError

from .. import thompson
from ..models import DisableKind
from .board import board
from .state import KEY_OWNED, Cooldown, HealthView, failure_reason
from .status import channel_auto_disable, channel_key_auto_disable


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    """What the journey tells of the request with each attempt: plain values (channels never
    imports routing)."""

    request_id: str
    model: str
    mode: str  # the routing mode that ordered the candidates ("" before one was chosen)
    attempt: int  # how many attempts the request has made so far, this one included
    health: HealthView | None = None  # the health view the plan saw (channels.health), if any


async def attempt_observe(
    *, seen: AttemptSeen, route, error: ProviderError | None, latency_ms: float, key_index: int | None = None
) -> Cooldown | None:
    """Record one attempt's outcome: health, reward log, the sampler's live counts; and disable
    the channel, or on a multi-key channel the key (in the background), when the upstream
    refused its credential or balance."""
    model = seen.model
    key_fp = route.key_fps[key_index] if key_index is not None and route.is_multikey and key_index < len(route.key_fps) else None
    if error is None:
        await board.asucceeded(route.channel_id, model, latency_ms=latency_ms, view=seen.health, key_fp=key_fp)
        thompson.reward_observe(seen=seen, route=route, outcome="ok", reward=1.0, latency_ms=latency_ms)
        return None
    if not error.kind.counts_against_channel:
        thompson.reward_observe(seen=seen, route=route, outcome=error.kind.value, reward=None, latency_ms=latency_ms)
        return None
    cooldown = await board.afailed(route.channel_id, model, error, latency_ms=latency_ms, key_fp=key_fp)
    key_owned = key_fp is not None and error.kind in KEY_OWNED
    # one key's refusal says nothing of how well the channel serves: its other keys carry on
    thompson.reward_observe(seen=seen, route=route, outcome=error.kind.value, reward=None if key_owned else 0.0, latency_ms=latency_ms)
    if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
        kind = DisableKind.AUTH if error.kind is ErrorKind.AUTH else DisableKind.QUOTA
        reason = (
            f"upstream {'refused the credential' if kind == DisableKind.AUTH else 'says the balance is exhausted'}: {failure_reason(error)}"
        )
        if key_owned:
            disable = sync_to_async(channel_key_auto_disable, thread_sensitive=False)
            background.spawn(disable(channel_id=route.channel_id, fingerprint=key_fp, kind=kind, reason=reason))
        else:
            disable = sync_to_async(channel_auto_disable, thread_sensitive=False)
            background.spawn(disable(channel_id=route.channel_id, kind=kind, reason=reason))
    return cooldown
