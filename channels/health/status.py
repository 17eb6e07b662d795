"""Durable channel status decided by TokenHub: disabling a channel is a different, lasting thing
from a cooldown (its `status` in the database). Auth and exhausted-balance errors disable at
once, with the reason and time; a high error rate over a window disables it from the sweep
(`channels.health.sweep`), never one stray error. The prober re-enables what TokenHub disabled
when a trial request succeeds. An operator's own enable/disable clears TokenHub's judgement.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from billing.alerts import operator_alert_queue
from common.config_version import config_changed
from vault.crypto import SecretUnreadable
from vault.services import secret_unseal

from ..keys import key_fingerprint
from ..models import Channel, ChannelHealth, DisableKind
from ..table import table_invalidate
from .board import board

log = logging.getLogger(__name__)


def channel_auto_disable(*, channel_id: int, kind: str, reason: str) -> bool:
    """Disable a channel on TokenHub's own judgement, with reason and time. Does nothing to a
    channel an operator disabled. Returns whether it changed anything."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            return False
        health, _ = ChannelHealth.objects.get_or_create(channel=channel)
        if channel.status == Channel.Status.DISABLED:
            return False
        channel.status = Channel.Status.DISABLED
        channel.status_reason = f"auto: {reason}"[:300]
        channel.status_changed_at = timezone.now()
        channel.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
        health.auto_disabled_kind = kind
        health.save(update_fields=["auto_disabled_kind", "updated_at"])
        operator_alert_queue(
            kind="channel_disabled",
            subject=f"Channel {channel.name} was disabled automatically: {reason}"[:300],
            payload={"channel_id": channel.pk, "channel": channel.name, "reason": kind},
        )
    log.warning("channel %s disabled automatically: %s", channel.name, reason)
    return True


def channel_fingerprints(channel: Channel) -> list[str]:
    """The fingerprints of a channel's upstream keys, in order ([] when it has none, or the
    vault cannot open its credential)."""
    try:
        text = secret_unseal(token=channel.credential) if channel.credential else ""
    except SecretUnreadable:
        return []
    return [key_fingerprint(k.strip()) for k in text.splitlines() if k.strip()]


def _keys_changed() -> None:
    table_invalidate()
    config_changed()  # every process routes around (or back to) the key at its next request


def channel_key_auto_disable(*, channel_id: int, fingerprint: str, kind: str, reason: str) -> bool:
    """Disable one upstream key of a multi-key channel on TokenHub's judgement (durably: the
    channel's ChannelHealth.disabled_keys, by fingerprint). When that leaves the channel no key,
    the channel itself is disabled as `channel_auto_disable` does. Returns whether it changed
    anything."""
    every_key_off = False
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None or channel.status == Channel.Status.DISABLED:
            return False
        fingerprints = channel_fingerprints(channel)
        if fingerprint not in fingerprints:
            return False  # the credential was replaced meanwhile: that key is gone
        health, _ = ChannelHealth.objects.get_or_create(channel=channel)
        disabled = {fp: why for fp, why in (health.disabled_keys or {}).items() if fp in fingerprints}
        if fingerprint in disabled:
            return False
        disabled[fingerprint] = {"kind": kind, "reason": reason[:300], "at": timezone.now().isoformat(timespec="seconds")}
        health.disabled_keys = disabled
        health.save(update_fields=["disabled_keys", "updated_at"])
        every_key_off = len(disabled) >= len(fingerprints)
        position = fingerprints.index(fingerprint) + 1
    log.warning("channel %s: upstream key %d of %d (%s) disabled automatically: %s",
                channel.name, position, len(fingerprints), fingerprint, reason)
    _keys_changed()
    if every_key_off:
        channel_auto_disable(channel_id=channel_id, kind=kind, reason=f"every upstream key was refused; last: {reason}")
    return True


def channel_keys_enable(*, channel_id: int) -> bool:
    """Forget which upstream keys TokenHub disabled (operators: enable_channel, the admin).
    Returns whether any was disabled."""
    changed = ChannelHealth.objects.filter(channel_id=channel_id).exclude(disabled_keys={}).update(disabled_keys={})
    if changed:
        _keys_changed()
    return bool(changed)


def channel_auto_enable(*, channel_id: int, why: str, kinds: tuple[str, ...] | None = None) -> bool:
    """Re-enable a channel TokenHub disabled (of these kinds), and forget its cooldowns."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        health = ChannelHealth.objects.filter(channel_id=channel_id).first()
        if channel is None or health is None or not health.auto_disabled_kind:
            return False
        if kinds is not None and health.auto_disabled_kind not in kinds:
            return False
        if channel.status == Channel.Status.DISABLED:
            channel.status = Channel.Status.ENABLED
            channel.status_reason = ""
            channel.status_changed_at = timezone.now()
            channel.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
        health.auto_disabled_kind = DisableKind.NONE
        had_keys_off = bool(health.disabled_keys)
        health.disabled_keys = {}  # a trial passed: every key gets its chance again
        health.save(update_fields=["auto_disabled_kind", "disabled_keys", "updated_at"])
    board.reset(channel_id)
    if had_keys_off:
        _keys_changed()
    log.warning("channel %s re-enabled automatically: %s", channel.name, why)
    return True


def channel_set_status(*, channel: Channel, is_enabled: bool, reason: str = "") -> Channel:
    """Write a channel's durable status (enabled or disabled, why, when): the one writer of it."""
    channel.status = Channel.Status.ENABLED if is_enabled else Channel.Status.DISABLED
    channel.status_reason = reason
    channel.status_changed_at = timezone.now()
    channel.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
    return channel


def channel_operator_set(*, channel, is_enabled: bool, reason: str = ""):
    """An operator's enable/disable: TokenHub's own judgement no longer applies to it."""
    channel = channel_set_status(channel=channel, is_enabled=is_enabled, reason=reason)
    ChannelHealth.objects.update_or_create(channel=channel, defaults={"auto_disabled_kind": DisableKind.NONE})
    if is_enabled:
        channel_keys_enable(channel_id=channel.pk)
        board.reset(channel.pk)
    return channel


