"""The routing table: every model and every (channel, model) route, read from the database
into memory so the hot path routes without a query. Rebuilt when older than
ROUTING_TABLE_TTL_S (in the background: requests keep using the old one meanwhile) and at
once after a local change to channels or models."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from common.config_version import config_follow
from common.snapshot import Snapshot
from providers.base import Timeouts
from vault.crypto import SecretUnreadable
from vault.services import secret_unseal

from .keys import key_fingerprint
from .models import Channel, ChannelHealth, ChannelModel, Model
from .netguard import base_url_problem


@dataclass(frozen=True, slots=True)
class ModelInfo:
    public_id: str
    context_window: int | None
    max_output: int | None
    is_hidden: bool
    created: int = 0  # Unix seconds: when the operator added it to the catalog


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a model: a channel and the name its upstream knows the model by."""

    channel_id: int
    channel_name: str
    provider_type: str
    brand: str
    base_url: str
    groups: frozenset[str]
    billing: str
    priority: int
    weight: int
    cost_ratio: Decimal
    discount_ratio: Decimal
    is_enabled: bool
    status_reason: str
    upstream_model: str
    timeouts: Timeouts
    options: dict
    unusable_reason: str  # vault locked, base URL refused: why it can't be used at all
    api_key: str | None = field(default=None, repr=False)  # the first key not disabled (probes, one-key channels)
    # every key of the channel, one a line in its credential (channels.keys), and their
    # fingerprints, in the same order; one-key channels have one of each
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    key_fps: tuple[str, ...] = ()
    disabled_keys: frozenset[str] = frozenset()  # fingerprints TokenHub disabled alone

    @property
    def is_multikey(self) -> bool:
        return len(self.api_keys) > 1

    def key_position(self, index: int) -> str:
        """How logs name a key: its position, never the key ("2/3")."""
        return f"{index + 1}/{len(self.api_keys)}"


@dataclass(frozen=True, slots=True)
class RoutingTable:
    models: dict[str, ModelInfo]
    names: dict[str, str]  # public id or alias -> public id
    routes: dict[str, tuple[Route, ...]]  # public id -> routes

    def resolve(self, name: str) -> ModelInfo | None:
        public_id = self.names.get(name)
        return self.models.get(public_id) if public_id else None


def table_build() -> RoutingTable:
    models = {
        m.public_id: ModelInfo(m.public_id, m.context_window, m.max_output, m.is_hidden, int(m.created_at.timestamp()))
        for m in Model.objects.all()
    }
    names: dict[str, str] = {}
    for m in Model.objects.all().only("public_id", "aliases"):
        for alias in m.aliases or ():
            names.setdefault(alias, m.public_id)
    names.update({public_id: public_id for public_id in models})  # a real id wins over an alias

    disabled_keys = {
        channel_id: frozenset(keys or ())
        for channel_id, keys in ChannelHealth.objects.exclude(disabled_keys={}).values_list("channel_id", "disabled_keys")
    }
    channel_facts: dict[int, tuple[tuple[str, ...], tuple[str, ...], str]] = {}
    for channel in Channel.objects.all():
        api_keys: tuple[str, ...] = ()
        problem = ""
        try:
            # one key a line (channels.keys); stored already checked, so a plain split
            api_keys = tuple(k.strip() for k in (secret_unseal(token=channel.credential) or "").splitlines() if k.strip())
        except SecretUnreadable as exc:
            problem = str(exc)
        if not problem and channel.provider_type != "simulated":
            problem = base_url_problem(channel.base_url) or ""
        channel_facts[channel.pk] = (api_keys, tuple(key_fingerprint(k) for k in api_keys), problem)

    routes: dict[str, list[Route]] = {}
    for cm in ChannelModel.objects.select_related("channel", "model").order_by("id"):
        channel = cm.channel
        api_keys, key_fps, problem = channel_facts[channel.pk]
        off = disabled_keys.get(channel.pk, frozenset()) & frozenset(key_fps) if len(api_keys) > 1 else frozenset()
        first_on = next((k for k, fp in zip(api_keys, key_fps) if fp not in off), None)
        routes.setdefault(cm.model.public_id, []).append(
            Route(
                channel_id=channel.pk,
                channel_name=channel.name,
                provider_type=channel.provider_type,
                brand=channel.brand or channel.provider_type,
                base_url=channel.base_url.rstrip("/"),
                groups=frozenset(channel.groups or ["default"]),
                billing=channel.billing,
                priority=channel.priority,
                weight=max(1, channel.weight),
                cost_ratio=channel.cost_ratio,
                discount_ratio=channel.discount_ratio,
                is_enabled=channel.status == Channel.Status.ENABLED and cm.is_enabled,
                status_reason=channel.status_reason if channel.status != Channel.Status.ENABLED else (
                    "" if cm.is_enabled else "model disabled on this channel"
                ),
                upstream_model=cm.upstream_name,
                timeouts=Timeouts(
                    connect_s=channel.connect_timeout_s or settings.UPSTREAM_CONNECT_TIMEOUT_S,
                    first_byte_s=channel.first_byte_timeout_s or settings.UPSTREAM_FIRST_BYTE_TIMEOUT_S,
                    idle_s=channel.idle_timeout_s or settings.UPSTREAM_IDLE_TIMEOUT_S,
                ),
                options=dict(channel.options or {}),
                unusable_reason=problem,
                api_key=first_on,
                api_keys=api_keys,
                key_fps=key_fps,
                disabled_keys=off,
            )
        )
    return RoutingTable(models, names, {k: tuple(v) for k, v in routes.items()})


_table: Snapshot[RoutingTable] = Snapshot(table_build, ttl_s=lambda: settings.ROUTING_TABLE_TTL_S, name="routing table")
config_follow(_table.invalidate)


async def table_aget() -> RoutingTable:
    return await _table.aget()


def table_invalidate() -> None:
    """The next request rebuilds the table before routing."""
    _table.invalidate()
