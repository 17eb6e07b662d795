"""What follows one upstream attempt (the journey calls `attempt_observe` for each): health,
the reward log and the sampler's live counts; and, in the background, disabling the channel when
the upstream refused its credential or balance."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from common import background
from providers.base import ErrorKind, ProviderError

from .. import thompson
from ..models import DisableKind
from .board import board
from .state import Cooldown, failure_reason
from .status import channel_auto_disable


async def attempt_observe(*, call, route, error: ProviderError | None, latency_ms: float) -> Cooldown | None:
    """Record one attempt's outcome: health, reward log, the sampler's live counts; and disable
    the channel (in the background) when the upstream refused its credential or balance."""
    model = call.model
    if error is None:
        plan = getattr(call, "plan", None)
        await board.asucceeded(route.channel_id, model, latency_ms=latency_ms, view=plan.health if plan else None)
        thompson.reward_observe(call=call, route=route, outcome="ok", reward=1.0, latency_ms=latency_ms)
        return None
    if not error.kind.counts_against_channel:
        thompson.reward_observe(call=call, route=route, outcome=error.kind.value, reward=None, latency_ms=latency_ms)
        return None
    cooldown = await board.afailed(route.channel_id, model, error, latency_ms=latency_ms)
    thompson.reward_observe(call=call, route=route, outcome=error.kind.value, reward=0.0, latency_ms=latency_ms)
    if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
        kind = DisableKind.AUTH if error.kind is ErrorKind.AUTH else DisableKind.QUOTA
        reason = (
            f"upstream {'refused the credential' if kind == DisableKind.AUTH else 'says the balance is exhausted'}: {failure_reason(error)}"
        )
        background.spawn(sync_to_async(channel_auto_disable, thread_sensitive=False)(channel_id=route.channel_id, kind=kind, reason=reason))
    return cooldown
