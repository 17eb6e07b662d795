"""Active probes: a tiny real request through a channel (a half-open trial), and which channels
need one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from providers.base import ErrorKind, ProviderError, Target, Timeouts
from providers.registry import get_adapter
from vault.crypto import SecretUnreadable

from .. import upstream
from ..keys import key_fingerprint
from ..models import Channel, ChannelHealth, ChannelModel, DisableKind
from ..netguard import base_url_problem
from ..selectors import channel_api_keys, channel_key_to_use
from .board import board
from .state import failure_reason
from .status import channel_auto_disable, channel_auto_enable, channel_key_auto_disable

log = logging.getLogger(__name__)

PROBE_MESSAGES = [{"role": "user", "content": "Reply with one word: ok"}]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    channel_id: int
    channel: str
    model: str
    is_ok: bool
    latency_ms: int
    error: str = ""
    kind: str = ""  # the error kind when it failed
    re_enabled: bool = False
    disabled: bool = False

    def as_dict(self) -> dict:
        return {
            "channel_id": self.channel_id, "channel": self.channel, "model": self.model, "ok": self.is_ok,
            "latency_ms": self.latency_ms, "error": self.error, "kind": self.kind,
            "re_enabled": self.re_enabled, "disabled": self.disabled,
        }


async def _probe_send(provider_type: str, target, timeout_s: float) -> None:
    request = {"model": target.upstream_model, "messages": PROBE_MESSAGES, "max_tokens": 1, "stream": False}
    async with upstream.client_make() as client:
        await get_adapter(provider_type).chat(client, target, request, Timeouts(min(5.0, timeout_s), timeout_s, timeout_s))


def channel_probe(*, channel_id: int, model: str | None = None, record: bool = True) -> ProbeResult:
    """Send one tiny chat request through the channel (a half-open trial). With `record`,
    the outcome counts: success ends cooldowns and re-enables a channel TokenHub disabled
    (except for an empty balance, which the balance monitor decides); failure backs off
    further, and an auth or quota refusal disables it."""
    channel = Channel.objects.get(pk=channel_id)
    links = ChannelModel.objects.filter(channel=channel).select_related("model").order_by("-is_enabled", "id")
    link = next((cm for cm in links if model is None or cm.model.public_id == model), None)
    if link is None:
        return ProbeResult(channel.pk, channel.name, model or "", False, 0, "the channel serves no such model", "config")
    public_id = link.model.public_id
    began = time.perf_counter()
    error: ProviderError | None = None
    problem = ""
    key_index, key_count = None, 0
    try:
        key_index, api_key = channel_key_to_use(channel)
        key_count = len(channel_api_keys(channel))
    except SecretUnreadable as exc:
        api_key, problem = None, str(exc)
    if not problem and channel.provider_type != "simulated":
        problem = base_url_problem(channel.base_url) or ""
    if not problem:
        target = Target(channel.base_url.rstrip("/"), link.upstream_name, api_key, dict(channel.options or {}))
        try:
            asyncio.run(_probe_send(channel.provider_type, target, settings.ROUTING_PROBE_TIMEOUT_S))
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not stop the other probes
            log.exception("probe of channel %s raised", channel.name)
            error = ProviderError(ErrorKind.TRANSIENT, f"probe failed: {type(exc).__name__}")
    latency_ms = round((time.perf_counter() - began) * 1000)
    if problem:
        return ProbeResult(channel.pk, channel.name, public_id, False, latency_ms, problem, "config")
    # A refusal of the request itself (400) still proves the upstream answers and the key works.
    is_ok = error is None or not error.kind.is_retryable
    result = ProbeResult(
        channel.pk, channel.name, public_id, is_ok, latency_ms, "" if is_ok else error.message[:300], "" if is_ok else error.kind.value
    )
    if not record:
        return result
    health, _ = ChannelHealth.objects.get_or_create(channel=channel)
    health.last_probe_at = timezone.now()
    health.last_probe_ok = is_ok
    health.last_probe_latency_ms = latency_ms
    health.last_probe_error = result.error
    health.probe_failures = 0 if is_ok else health.probe_failures + 1
    health.save()
    re_enabled = disabled = False
    if is_ok:
        board.succeeded(channel.pk, public_id, latency_ms=latency_ms)
        if health.auto_disabled_kind and health.auto_disabled_kind != DisableKind.BALANCE:
            re_enabled = channel_auto_enable(channel_id=channel.pk, why=f"probe of {public_id} succeeded in {latency_ms} ms")
    else:
        # on a multi-key channel a refusal of the key is that key's alone (channels.keys)
        key_fp = key_fingerprint(api_key) if key_count > 1 and api_key and channel.status == Channel.Status.ENABLED else None
        board.failed(channel.pk, public_id, error, latency_ms=latency_ms, key_fp=key_fp)
        if error.kind in (ErrorKind.AUTH, ErrorKind.QUOTA):
            kind = DisableKind.AUTH if error.kind is ErrorKind.AUTH else DisableKind.QUOTA
            reason = f"probe: {failure_reason(error)}"
            if key_fp is not None:
                disabled = channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fp, kind=kind, reason=reason)
            else:
                disabled = channel_auto_disable(channel_id=channel.pk, kind=kind, reason=reason)
    return dataclasses.replace(result, re_enabled=re_enabled, disabled=disabled)


def channels_to_probe(*, limit: int = 50) -> list[tuple[int, str | None]]:
    """(channel id, model or None): channels TokenHub disabled (not for an empty balance), and
    channels or routes in a failure streak, except while a rate limit's Retry-After runs."""
    wanted: dict[tuple[int, str | None], None] = {}
    for channel_id in ChannelHealth.objects.exclude(auto_disabled_kind__in=[DisableKind.NONE, DisableKind.BALANCE]).filter(
        channel__status=Channel.Status.DISABLED
    ).values_list("channel_id", flat=True):
        wanted[(channel_id, None)] = None
    now = time.time()
    enabled = set(Channel.objects.filter(status=Channel.Status.ENABLED).values_list("pk", flat=True))
    for key, record in board.records().items():
        if record.kind == ErrorKind.RATE_LIMITED.value and record.until > now:
            continue  # the upstream told us when to come back
        if record.kind == "manual":
            continue
        if key.startswith("k:"):
            continue  # one upstream key of a multi-key channel: real requests try it again when it is ready
        parts = key.split(":", 2)
        channel_id = int(parts[1])
        if channel_id not in enabled:
            continue
        if record.until <= now and record.strikes <= 1:
            continue  # one failure, already over: the next request is the trial
        wanted[(channel_id, parts[2] if len(parts) == 3 else None)] = None
    return list(wanted)[:limit]
