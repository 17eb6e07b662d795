"""Model discovery: ask a channel's upstream which models it serves, propose the ChannelModel
rows it lacks, and add them when the operator says so (`manage.py discover_models`).

    proposal = channel_models_discover(channel=channel)        # reads the upstream only
    added = channel_models_apply(channel=channel, models=proposal.new)

A discovered model is offered under its upstream name as its public id. Applying creates the
Model when it is new (taking the upstream's context window and output limit when ours are
unset) and the ChannelModel row; it never changes or removes rows that exist. Nothing is
priced here: a new model still needs `set_price` before it is served.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from django.db import transaction

from providers.base import DiscoveredModel, ProviderError, Target, Timeouts
from providers.registry import get_adapter

from . import upstream
from .models import Channel, ChannelModel
from .netguard import base_url_problem
from .services import model_ensure

__all__ = ["Proposal", "channel_models_apply", "channel_models_discover"]

KINDS = ("chat", "embeddings")


@dataclass(frozen=True)
class Proposal:
    channel: Channel
    found: list[DiscoveredModel]  # everything the upstream listed (of the kinds asked)
    new: list[DiscoveredModel]  # those the channel does not serve yet
    existing: list[str]  # upstream names the channel serves already


def channel_models_discover(*, channel: Channel, kinds: tuple[str, ...] = KINDS, timeout_s: float = 15.0) -> Proposal:
    from vault.crypto import SecretUnreadable
    from vault.services import secret_unseal

    adapter = get_adapter(channel.provider_type)
    if not hasattr(adapter, "list_models"):
        raise ValueError(f"channels of type {channel.provider_type!r} cannot list their models")
    problem = base_url_problem(channel.base_url)
    if problem:
        raise ValueError(problem)
    try:
        api_key = secret_unseal(token=channel.credential) or None
    except SecretUnreadable as exc:
        raise ValueError(f"the channel's credential is sealed: {exc}") from None
    target = Target(channel.base_url, "", api_key, dict(channel.options or {}), channel.brand)
    timeouts = Timeouts(connect_s=min(5.0, timeout_s), first_byte_s=timeout_s, idle_s=timeout_s)
    try:
        found = asyncio.run(_list(adapter, target, timeouts))
    except ProviderError as error:
        raise ValueError(f"the upstream did not list its models: {error.message}") from None
    found = [m for m in found if set(m.kinds) & set(kinds)]
    served = set(channel.channel_models.values_list("upstream_name", flat=True))
    return Proposal(
        channel=channel,
        found=found,
        new=[m for m in found if m.id not in served],
        existing=sorted(m.id for m in found if m.id in served),
    )


@transaction.atomic
def channel_models_apply(*, channel: Channel, models: list[DiscoveredModel]) -> list[ChannelModel]:
    added = []
    for discovered in models:
        model = model_ensure(public_id=discovered.id)
        changed = []
        if discovered.context_window and model.context_window is None:
            model.context_window, changed = discovered.context_window, changed + ["context_window"]
        if discovered.max_output and model.max_output is None:
            model.max_output, changed = discovered.max_output, changed + ["max_output"]
        if changed:
            model.save(update_fields=changed)
        row, is_new = ChannelModel.objects.get_or_create(channel=channel, model=model, defaults={"upstream_name": discovered.id})
        if is_new:
            added.append(row)
    return added


async def _list(adapter, target: Target, timeouts: Timeouts) -> list[DiscoveredModel]:
    async with upstream.client_make() as client:
        return await adapter.list_models(client, target, timeouts)
