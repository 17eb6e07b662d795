"""Model discovery: ask a channel's upstream which models it serves, propose the ChannelModel
rows it lacks, and add them when the operator says so (`manage.py discover_models`).

    proposal = channel_models_discover(channel=channel)        # reads the upstream only
    added = channel_models_apply(channel=channel, models=proposal.new)

A discovered model is offered under its upstream name as its public id. Applying creates the
Model when it is new (taking the upstream's context window and output limit when ours are
unset) and the ChannelModel row; it never changes or removes rows that exist. Nothing is
priced here: a new model still needs `set_price` before it is served.

`base_url_check` is the same question asked before a channel exists: does this base URL answer
`GET <base>/models` as an API root? (`add_channel` and `import_config` ask it unless told
`--no-check`.) When it does not but `<base>/v1` does, the error names that fix.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from django.db import transaction

from providers.base import DiscoveredModel, ErrorKind, ProviderError, Target, Timeouts
from providers.registry import get_adapter
from vault.crypto import SecretUnreadable

from . import upstream
from .models import Channel, ChannelModel
from .netguard import base_url_problem
from .selectors import channel_key_to_use
from .services import model_ensure

__all__ = ["Proposal", "base_url_check", "channel_models_apply", "channel_models_discover"]

_API_ROOT_HINT = {
    "openai": "the API root up to and including /v1 (https://api.openai.com/v1)",
    "anthropic": "the host root, without /v1 (https://api.anthropic.com)",
    "gemini": "the host root, without /v1beta (https://generativelanguage.googleapis.com)",
}

KINDS = ("chat", "embeddings")


@dataclass(frozen=True)
class Proposal:
    channel: Channel
    found: list[DiscoveredModel]  # everything the upstream listed (of the kinds asked)
    new: list[DiscoveredModel]  # those the channel does not serve yet
    existing: list[str]  # upstream names the channel serves already


def channel_models_discover(*, channel: Channel, kinds: tuple[str, ...] = KINDS, timeout_s: float = 15.0) -> Proposal:
    adapter = get_adapter(channel.provider_type)
    if not hasattr(adapter, "list_models"):
        raise ValueError(f"channels of type {channel.provider_type!r} cannot list their models")
    problem = base_url_problem(channel.base_url)
    if problem:
        raise ValueError(problem)
    try:
        _, api_key = channel_key_to_use(channel)
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


def base_url_check(
    *, provider_type: str, base_url: str, api_key: str = "", brand: str = "", options: dict | None = None, timeout_s: float = 5.0
) -> None:
    """Raise ValueError, naming the likely fix, when `base_url` is not this type's API root.

    openai: probed with `GET <base>/models` (the adapter's own request, brand quirks included);
    a miss there that `<base>/v1` answers is the classic missing `/v1`. anthropic and gemini:
    checked without a request (their root is the host, so a version suffix is the mistake).
    """
    base_url = base_url.rstrip("/")
    hint = _API_ROOT_HINT.get(provider_type)
    if hint is None:
        return  # simulated: nothing to reach
    if provider_type in ("anthropic", "gemini"):  # a rule on the URL itself: nothing is sent
        stripped = base_url
        for suffix in ("/v1", "/v1beta", "/v1alpha"):
            if stripped.endswith(suffix):
                stripped = stripped[: -len(suffix)]
        if stripped != base_url:
            raise ValueError(
                f"the {provider_type} base URL is {hint}: use --base-url {stripped} (or --no-check to keep {base_url})"
            )
        return
    problem = base_url_problem(base_url)
    if problem:
        raise ValueError(problem)  # never probe an address we refuse to use
    timeouts = Timeouts(connect_s=min(5.0, timeout_s), first_byte_s=timeout_s, idle_s=timeout_s)
    failure = _probe(base_url, api_key, brand, options, timeouts)
    if failure is None:
        return
    if not base_url.endswith("/v1"):
        candidate = f"{base_url}/v1"
        other = _probe(candidate, api_key, brand, options, timeouts)
        if other is None or (other.kind is ErrorKind.AUTH and failure.kind is not ErrorKind.AUTH):
            raise ValueError(
                f"{base_url} does not answer GET /models ({failure.message}) but {candidate} does: the openai base URL "
                f"is {hint}; use --base-url {candidate} (or --no-check to keep it as it is)"
            )
    if failure.kind is ErrorKind.AUTH:
        raise ValueError(f"GET {base_url}/models refused the API key ({failure.message}): check --api-key, or use --no-check")
    raise ValueError(
        f"GET {base_url}/models failed ({failure.message}): the openai base URL is {hint}; "
        "check --base-url, or use --no-check if this upstream does not list its models"
    )


def _probe(base_url: str, api_key: str, brand: str, options: dict | None, timeouts: Timeouts) -> ProviderError | None:
    target = Target(base_url, "", api_key or None, dict(options or {}), brand)
    try:
        asyncio.run(_list(get_adapter("openai"), target, timeouts))
    except ProviderError as error:
        return error
    return None


async def _list(adapter, target: Target, timeouts: Timeouts) -> list[DiscoveredModel]:
    async with upstream.client_make() as client:
        return await adapter.list_models(client, target, timeouts)
