"""Writes to the model catalog and channels."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from common.decimals import decimal_for_field
from observability.selectors import channel_has_history
from providers.brands import RESPONSES_OPTION
from vault.services import secret_seal

from .health.status import channel_operator_set, channel_set_status  # noqa: F401 (channel_set_status: a service of this app)
from .keys import key_fingerprint, keys_parse, keys_text
from .models import BillingClass, Channel, ChannelHealth, ChannelModel, Model, ProviderType
from .netguard import base_url_problem
from .selectors import model_owning


def _ratio(text, name: str) -> Decimal:
    """`cost_ratio` or `discount_ratio`: non-negative, within what its column holds."""
    return decimal_for_field(text, field=Channel._meta.get_field(name), what=name.replace("_", " "), minimum=Decimal(0))


def model_id_check(*, public_id: str, model: Model | None = None) -> str:
    """`public_id` if a catalog model (`model`, when renaming one) may take it, else ValueError:
    non-empty, no spaces, and not another model's alias (a request naming it would mean two
    models, and set_model on the alias' model would fail from then on)."""
    if not public_id or any(c.isspace() for c in public_id):
        raise ValueError(f"model id {public_id!r} must be non-empty, without spaces")
    holder = model_owning(name=public_id)
    if holder is not None and holder[1] and (model is None or holder[0] != model.public_id):
        raise ValueError(
            f"model id {public_id!r} is already an alias of {holder[0]}; "
            f"use that model, or first take the alias away (set_model {holder[0]} --aliases ...)"
        )
    return public_id


def model_aliases_check(*, public_id: str, aliases: list[str], model: Model | None = None) -> list[str]:
    """The aliases the model `public_id` (`model` once it exists) may have, sorted, without its
    own id; ValueError when one is a model id or another model's alias."""
    if not isinstance(aliases, list) or any(not isinstance(a, str) or not a or any(c.isspace() for c in a) for a in aliases):
        raise ValueError("aliases must be a list of non-empty ids without spaces")
    others = Model.objects.exclude(aliases=[]).only("public_id", "aliases")
    if model is not None:
        others = others.exclude(pk=model.pk)
    for alias in aliases:
        if alias == public_id:
            continue
        if Model.objects.filter(public_id=alias).exists():
            raise ValueError(f"alias {alias!r} is already a model id")
        for other in others:
            if alias in (other.aliases or []):
                raise ValueError(f"alias {alias!r} already belongs to {other.public_id}")
    return sorted(set(aliases) - {public_id})


def model_ensure(*, public_id: str) -> Model:
    """The catalog model `public_id`, made when missing. Every path that makes a model comes
    here (add_channel, set_model, the API, discovery, import_config), so each gets model_id_check."""
    model = Model.objects.filter(public_id=public_id).first()
    if model is None:
        model, _ = Model.objects.get_or_create(public_id=model_id_check(public_id=public_id))
    return model


@transaction.atomic
def model_set(
    *,
    public_id: str,
    context_window: int | None = None,
    max_output: int | None = None,
    aliases: list[str] | None = None,
    is_hidden: bool | None = None,
) -> Model:
    model = model_ensure(public_id=public_id)
    if context_window is not None:
        if context_window < 1:
            raise ValueError("context window must be positive")
        model.context_window = context_window
    if max_output is not None:
        if max_output < 1:
            raise ValueError("max output must be positive")
        model.max_output = max_output
    if aliases is not None:
        model.aliases = model_aliases_check(public_id=public_id, aliases=aliases, model=model)
    if is_hidden is not None:
        model.is_hidden = is_hidden
    model.save()
    return model


def parse_model_specs(specs: list[str]) -> list[tuple[str, str]]:
    """['m1', 'm2=upstream'] -> [('m1', 'm1'), ('m2', 'upstream')]"""
    pairs = []
    for spec in specs:
        public_id, _, upstream_name = spec.partition("=")
        public_id, upstream_name = public_id.strip(), (upstream_name.strip() or public_id.strip())
        if not public_id:
            raise ValueError(f"model spec {spec!r} has no model id")
        pairs.append((public_id, upstream_name))
    if not pairs:
        raise ValueError("a channel needs at least one model (--models m1,m2[=upstream_name])")
    if len({p for p, _ in pairs}) != len(pairs):
        raise ValueError("a model is listed twice in --models")
    return pairs


def options_checked(options: dict | None) -> dict:
    """A channel's `options`, refused when a value the relay reads has the wrong type."""
    options = options or {}
    if not isinstance(options, dict):
        raise ValueError("options must be a mapping")
    if RESPONSES_OPTION in options and not isinstance(options[RESPONSES_OPTION], bool):
        raise ValueError(f"options.{RESPONSES_OPTION} must be true or false")
    return options
def credential_text(api_key: str | list[str] | tuple[str, ...] | None) -> str:
    """What a channel's credential seals: its keys one a line ("" for none). Accepts one key,
    newline-separated keys or a list; refuses (never quoting a key) spaces inside a key, a key
    given twice, too many keys (channels.keys)."""
    return keys_text(keys_parse(api_key))


def _groups_checked(groups: list[str] | None) -> list[str]:
    """The tenant groups a channel serves (none given: `default`). A group not made yet is
    accepted: a channel may be set up for a group before its tenants arrive (a tenant's own group
    must exist, accounts.services)."""
    if groups is None:
        return ["default"]
    if not groups or any(not g or not g.replace("-", "").replace("_", "").isalnum() for g in groups):
        raise ValueError("groups must be a non-empty list of letters, digits, - or _")
    return groups


def _channel_checked(
    *, provider_type: str, base_url: str, billing: str, weight: int, cost_ratio, discount_ratio
) -> dict:
    """The validated fields shared by channel_create and channel_update."""
    if provider_type not in ProviderType.values:
        raise ValueError(f"unknown provider type {provider_type!r}; one of {', '.join(ProviderType.values)}")
    if billing not in BillingClass.values:
        raise ValueError(f"billing must be one of {', '.join(BillingClass.values)}")
    if weight < 1:
        raise ValueError("weight must be at least 1")
    if provider_type != ProviderType.SIMULATED:
        problem = base_url_problem(base_url, is_saving=True)
        if problem:
            raise ValueError(problem)
    return {
        "provider_type": provider_type,
        "base_url": base_url.rstrip("/"),
        "billing": billing,
        "weight": weight,
        "cost_ratio": _ratio(cost_ratio, "cost_ratio"),
        "discount_ratio": _ratio(discount_ratio, "discount_ratio"),
    }


@transaction.atomic
def channel_create(
    *,
    name: str,
    provider_type: str,
    base_url: str,
    models: list[tuple[str, str]],
    api_key: str | list[str] = "",
    credential_source: str = "",
    brand: str = "",
    priority: int = 0,
    weight: int = 1,
    billing: str = BillingClass.OFFICIAL,
    groups: list[str] | None = None,
    cost_ratio="1",
    discount_ratio="1",
    options: dict | None = None,
) -> Channel:
    """A new channel. `api_key`: one upstream key, several one a line, or a list of keys."""
    api_key = credential_text(api_key)
    if not name.strip():
        raise ValueError("channel name must not be empty")
    if Channel.objects.filter(name=name).exists():
        raise ValueError(f"a channel named {name!r} exists already")
    checked = _channel_checked(
        provider_type=provider_type, base_url=base_url, billing=billing, weight=weight,
        cost_ratio=cost_ratio, discount_ratio=discount_ratio,
    )
    channel = Channel.objects.create(
        name=name,
        brand=brand or provider_type,
        credential=secret_seal(plaintext=api_key) if api_key else "",
        credential_source=credential_source if api_key else "",
        groups=_groups_checked(groups or None),
        priority=priority,
        options=options_checked(options),
        **checked,
    )
    for public_id, upstream_name in models:
        ChannelModel.objects.create(channel=channel, model=model_ensure(public_id=public_id), upstream_name=upstream_name)
    return channel


@transaction.atomic
def channel_replace(
    *,
    channel: Channel,
    provider_type: str,
    base_url: str,
    models: list[tuple[str, str]],
    api_key: str | list[str] | None = None,
    credential_source: str = "",
    brand: str = "",
    priority: int = 0,
    weight: int = 1,
    billing: str = BillingClass.OFFICIAL,
    groups: list[str] | None = None,
    cost_ratio="1",
    discount_ratio="1",
    options: dict | None = None,
) -> Channel:
    """Make a channel what these arguments say, every field (as channel_create would have made
    it; import_config's update). `api_key=None` keeps its credential; served models not in
    `models` are removed. `channel_update` changes only the fields it is given."""
    api_key = None if api_key is None else credential_text(api_key)
    checked = _channel_checked(
        provider_type=provider_type, base_url=base_url, billing=billing, weight=weight,
        cost_ratio=cost_ratio, discount_ratio=discount_ratio,
    )
    for field, value in {**checked, "brand": brand or provider_type, "groups": _groups_checked(groups or None),
                         "priority": priority, "options": options_checked(options)}.items():
        setattr(channel, field, value)
    if api_key is not None:
        channel.credential = secret_seal(plaintext=api_key) if api_key else ""
        channel.credential_source = credential_source if api_key else ""
    channel.save()
    if api_key is not None:
        _disabled_keys_keep(channel, api_key)
    wanted = dict(models)
    for row in channel.channel_models.select_related("model"):
        upstream_name = wanted.pop(row.model.public_id, None)
        if upstream_name is None:
            row.delete()
        elif row.upstream_name != upstream_name:
            row.upstream_name = upstream_name
            row.save(update_fields=["upstream_name"])
    for public_id, upstream_name in wanted.items():
        ChannelModel.objects.create(channel=channel, model=model_ensure(public_id=public_id), upstream_name=upstream_name)
    return channel


class ChannelHasHistory(ValueError):
    """A channel that served requests is kept (its logs point at it): disable it instead."""


CHANNEL_FIELDS = frozenset({"name", "base_url", "brand", "groups", "billing", "priority", "weight", "cost_ratio", "discount_ratio"})


@transaction.atomic
def channel_update(*, channel: Channel, models: list[tuple[str, str]] | None = None, **fields) -> Channel:
    """Change a channel's settings (any of CHANNEL_FIELDS) and, when given, the models it serves."""
    unknown = set(fields) - CHANNEL_FIELDS
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    fields = {k: v for k, v in fields.items() if v is not None}
    if "name" in fields:
        fields["name"] = fields["name"].strip()
        if not fields["name"]:
            raise ValueError("channel name must not be empty")
        if Channel.objects.filter(name=fields["name"]).exclude(pk=channel.pk).exists():
            raise ValueError(f"a channel named {fields['name']!r} exists already")
    if "billing" in fields and fields["billing"] not in BillingClass.values:
        raise ValueError(f"billing must be one of {', '.join(BillingClass.values)}")
    if "weight" in fields and fields["weight"] < 1:
        raise ValueError("weight must be at least 1")
    if "groups" in fields:
        fields["groups"] = _groups_checked(fields["groups"])
    if "base_url" in fields:
        fields["base_url"] = fields["base_url"].rstrip("/")
        if channel.provider_type != ProviderType.SIMULATED:
            problem = base_url_problem(fields["base_url"], is_saving=True)
            if problem:
                raise ValueError(problem)
    for what in ("cost_ratio", "discount_ratio"):
        if what in fields:
            fields[what] = _ratio(fields[what], what)
    for name, value in fields.items():
        setattr(channel, name, value)
    channel.save()
    if models is not None:
        pairs = parse_model_specs([f"{p}={u}" for p, u in models]) if models else parse_model_specs([])
        channel.channel_models.exclude(model__public_id__in=[p for p, _ in pairs]).delete()
        for public_id, upstream_name in pairs:
            ChannelModel.objects.update_or_create(
                channel=channel, model=model_ensure(public_id=public_id), defaults={"upstream_name": upstream_name}
            )
    return channel


def channel_credential_set(*, channel: Channel, api_key: str | list[str]) -> Channel:
    """Replace the upstream credential: one key, or several (one a line, or a list); sealed by
    the vault; an empty one clears it. Keys TokenHub had disabled stay disabled only if they
    are still among the new keys."""
    if isinstance(api_key, str) and "\n" not in api_key.strip() and any(c.isspace() for c in api_key.strip()):
        raise ValueError("the credential must be one key a line, without spaces")
    text = credential_text(api_key)
    with transaction.atomic():
        channel.credential = secret_seal(plaintext=text) if text else ""
        channel.save(update_fields=["credential", "updated_at"])
        _disabled_keys_keep(channel, text)
    return channel


def _disabled_keys_keep(channel: Channel, text: str) -> None:
    """After a credential change: forget disabled keys that are no longer the channel's."""
    present = {key_fingerprint(k) for k in text.splitlines() if k}
    health = ChannelHealth.objects.filter(channel=channel).exclude(disabled_keys={}).first()
    if health is not None:
        kept = {fp: why for fp, why in health.disabled_keys.items() if fp in present}
        if kept != health.disabled_keys:
            health.disabled_keys = kept
            health.save(update_fields=["disabled_keys", "updated_at"])


@transaction.atomic
def channel_delete(*, channel: Channel, disable_instead: bool = False) -> bool:
    """Delete a channel that never served a request. One that did is refused (ChannelHasHistory),
    or with `disable_instead` disabled and kept. Returns whether it was deleted."""
    if channel_has_history(channel_id=channel.pk):
        if not disable_instead:
            raise ChannelHasHistory(f"channel {channel.name!r} has request history; disable it instead")
        channel_operator_set(channel=channel, is_enabled=False, reason="disabled instead of deleted: it has request history")
        return False
    channel.delete()
    return True
