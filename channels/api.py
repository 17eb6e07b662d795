"""Management API: channels (the upstream credential is write-only: accepted, never returned)
and the model catalog (mounted under /api/v1/ by relay.api). Operators only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError

from accounts.apiauth import MAX_ID, operator_required, with_errors

from .health.status import channel_operator_set
from .keys import MAX_KEYS
from .models import BillingClass, Channel, Model, ProviderType
from .selectors import channel_keys
from .services import channel_create, channel_credential_set, channel_delete, channel_update, model_set

router = Router(tags=["channels"])

RATIO = Field(None, ge=0, le=1000, max_digits=8, decimal_places=4)


class ChannelModelIO(Schema):
    model: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    upstream_name: str = Field("", max_length=200, description="empty: the same as model")


class ChannelModelOut(ChannelModelIO):
    is_enabled: bool


class UpstreamKeyOut(Schema):
    position: int
    fingerprint: str = Field(description="12 hex of the key's SHA-256: how the key is named (the key itself is never returned)")
    state: str = Field(description="ready, cooling or disabled")
    until: str | None = Field(None, description="cooling: when the key may be used again (ISO 8601)")
    reason: str | None = None
    at: str | None = Field(None, description="disabled: when")


# write-only upstream keys: one, several one a line, or a list (channels.keys)
ApiKeys = str | Annotated[list[Annotated[str, Field(max_length=4000)]], Field(max_length=MAX_KEYS)]


class ChannelOut(Schema):
    id: int
    name: str
    provider_type: str
    brand: str
    base_url: str
    groups: list[str]
    billing: str
    priority: int
    weight: int
    cost_ratio: Decimal
    discount_ratio: Decimal
    status: str
    status_reason: str
    has_credential: bool = Field(description="whether an upstream credential is set (the credential itself is never returned)")
    key_count: int | None = Field(None, description="how many upstream keys the credential holds (None: the vault is locked)")
    keys: list[UpstreamKeyOut] = Field(default_factory=list)
    models: list[ChannelModelOut]
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_has_credential(obj):
        return bool(obj.credential)

    @staticmethod
    def resolve_key_count(obj):
        return channel_keys(obj)["key_count"]

    @staticmethod
    def resolve_keys(obj):
        return channel_keys(obj)["keys"]

    @staticmethod
    def resolve_models(obj):
        return [
            {"model": cm.model.public_id, "upstream_name": cm.upstream_name, "is_enabled": cm.is_enabled}
            for cm in obj.channel_models.select_related("model").order_by("model__public_id")
        ]


class ChannelIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    provider_type: ProviderType
    base_url: str = Field(min_length=1, max_length=500)
    api_key: ApiKeys = Field(
        "", max_length=64_000,
        description="write-only: one upstream key, several one a line, or a list; sealed by the vault, never returned",
    )
    models: list[ChannelModelIO] = Field(min_length=1, max_length=500)
    brand: str = Field("", max_length=50)
    groups: list[str] = Field(default_factory=lambda: ["default"], min_length=1, max_length=50)
    billing: BillingClass = BillingClass.OFFICIAL
    priority: int = Field(0, ge=-(2**31), le=2**31 - 1)
    weight: int = Field(1, ge=1, le=2**31 - 1)
    cost_ratio: Decimal = Field(Decimal(1), ge=0, le=1000, max_digits=8, decimal_places=4)
    discount_ratio: Decimal = Field(Decimal(1), ge=0, le=1000, max_digits=8, decimal_places=4)


class ChannelPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    base_url: str | None = Field(None, min_length=1, max_length=500)
    api_key: ApiKeys | None = Field(
        None, max_length=64_000, description="write-only: one key, several one a line, or a list; an empty string clears it"
    )
    models: list[ChannelModelIO] | None = Field(None, min_length=1, max_length=500)
    brand: str | None = Field(None, max_length=50)
    groups: list[str] | None = Field(None, min_length=1, max_length=50)
    billing: BillingClass | None = None
    priority: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    weight: int | None = Field(None, ge=1, le=2**31 - 1)
    cost_ratio: Decimal | None = RATIO
    discount_ratio: Decimal | None = RATIO


class DisableIn(Schema):
    reason: str = Field("", max_length=250)


class Deleted(Schema):
    deleted: bool
    disabled: bool


def _pairs(models: list[ChannelModelIO]) -> list[tuple[str, str]]:
    return [(m.model, m.upstream_name or m.model) for m in models]


def _channel(channel_id: int) -> Channel:
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise HttpError(404, f"no channel {channel_id}")
    return channel


@router.get("/channels", response=with_errors({200: list[ChannelOut]}), summary="List channels")
def channels_list(request, status: Channel.Status | None = None):
    operator_required(request)
    channels = Channel.objects.order_by("-priority", "name")
    if status is not None:
        channels = channels.filter(status=status)
    return list(channels)


@router.post("/channels", response=with_errors({201: ChannelOut}), summary="Create a channel")
def channels_create(request, body: ChannelIn):
    operator_required(request)
    channel = channel_create(
        name=body.name, provider_type=body.provider_type, base_url=body.base_url, models=_pairs(body.models), api_key=body.api_key,
        brand=body.brand, groups=body.groups, billing=body.billing, priority=body.priority, weight=body.weight,
        cost_ratio=body.cost_ratio, discount_ratio=body.discount_ratio,
    )
    return Status(201, channel)


@router.get("/channels/{channel_id}", response=with_errors({200: ChannelOut}), summary="Show a channel")
def channels_show(request, channel_id: int = Path(..., ge=1, le=MAX_ID)):
    operator_required(request)
    return _channel(channel_id)


@router.patch("/channels/{channel_id}", response=with_errors({200: ChannelOut}), summary="Change a channel (and its credential)")
def channels_update(request, body: ChannelPatch, channel_id: int = Path(..., ge=1, le=MAX_ID)):
    operator_required(request)
    channel = _channel(channel_id)
    fields = body.dict(exclude_unset=True, exclude={"api_key", "models"})
    channel = channel_update(channel=channel, models=_pairs(body.models) if body.models is not None else None, **fields)
    if body.api_key is not None:
        channel = channel_credential_set(channel=channel, api_key=body.api_key)
    return channel


@router.post("/channels/{channel_id}/enable", response=with_errors({200: ChannelOut}), summary="Enable (and forget its cooldowns)")
def channels_enable(request, channel_id: int = Path(..., ge=1, le=MAX_ID)):
    operator_required(request)
    return channel_operator_set(channel=_channel(channel_id), is_enabled=True)


@router.post("/channels/{channel_id}/disable", response=with_errors({200: ChannelOut}), summary="Disable, with a reason")
def channels_disable(request, body: DisableIn, channel_id: int = Path(..., ge=1, le=MAX_ID)):
    operator_required(request)
    return channel_operator_set(channel=_channel(channel_id), is_enabled=False, reason=body.reason)


@router.delete("/channels/{channel_id}", response=with_errors({200: Deleted}),
               summary="Delete a channel without history (409 otherwise; disable_instead=true disables it)")
def channels_delete(request, channel_id: int = Path(..., ge=1, le=MAX_ID), disable_instead: bool = Query(False)):
    operator_required(request)
    deleted = channel_delete(channel=_channel(channel_id), disable_instead=disable_instead)
    return {"deleted": deleted, "disabled": not deleted}


# --- models ----------------------------------------------------------------------------------------


class ModelOut(Schema):
    public_id: str
    aliases: list[str]
    context_window: int | None
    max_output: int | None
    is_hidden: bool


class ModelIn(Schema):
    public_id: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    context_window: int | None = Field(None, ge=1, le=2**31 - 1)
    max_output: int | None = Field(None, ge=1, le=2**31 - 1)
    aliases: list[str] | None = Field(None, max_length=50)
    is_hidden: bool | None = None


@router.get("/models", response=with_errors({200: list[ModelOut]}), summary="The model catalog")
def models_list(request):
    return list(Model.objects.order_by("public_id"))


@router.post("/models", response=with_errors({200: ModelOut}), summary="Add or change a catalog model")
def models_set(request, body: ModelIn):
    operator_required(request)
    if body.aliases and any(not a or len(a) > 200 or any(c.isspace() for c in a) for a in body.aliases):
        raise HttpError(400, "each alias must be a non-empty id without spaces")
    return model_set(public_id=body.public_id, context_window=body.context_window, max_output=body.max_output,
                     aliases=body.aliases, is_hidden=body.is_hidden)
