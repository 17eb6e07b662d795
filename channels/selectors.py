from __future__ import annotations

from datetime import datetime, timezone

from vault.crypto import SecretUnreadable
from vault.services import secret_unseal

from .health.board import board
from .keys import key_fingerprint
from .models import Channel, ChannelHealth, ChannelModel, Model


def model_ids_existing(*, ids: list[str]) -> set[str]:
    """Which of these public ids (or aliases) name a model in the catalog."""
    found = set(Model.objects.filter(public_id__in=ids).values_list("public_id", flat=True))
    missing = set(ids) - found
    if missing:
        for model in Model.objects.exclude(aliases=[]).only("aliases"):
            found |= missing & set(model.aliases or ())
    return found


def channel_get(*, ref: str | int):
    """A channel by its unique name, or by its id. Raises Channel.DoesNotExist."""
    ref = str(ref)
    channel = Channel.objects.filter(name=ref).first()
    if channel is None and ref.isdigit():
        channel = Channel.objects.filter(pk=int(ref)).first()
    if channel is None:
        raise Channel.DoesNotExist(f"no channel named or numbered {ref!r}")
    return channel


def channel_describe(channel) -> dict:
    """A channel as commands and the API show it: never its credential, only whether it has one."""
    return {
        "id": channel.pk, "name": channel.name, "provider_type": channel.provider_type, "brand": channel.brand,
        "base_url": channel.base_url, "groups": list(channel.groups), "billing": channel.billing, "priority": channel.priority,
        "weight": channel.weight, "cost_ratio": str(channel.cost_ratio), "discount_ratio": str(channel.discount_ratio),
        "status": channel.status, "status_reason": channel.status_reason, "has_credential": bool(channel.credential),
        **channel_keys(channel),
        "models": [
            {"model": cm.model.public_id, "upstream_name": cm.upstream_name, "is_enabled": cm.is_enabled}
            for cm in channel.channel_models.select_related("model").order_by("model__public_id")
        ],
    }


def channel_api_keys(channel) -> list[str]:
    """The plain upstream keys of a channel, in order (raises SecretUnreadable when the vault
    cannot open them). For sending only: never log or show what this returns."""
    text = secret_unseal(token=channel.credential) if channel.credential else ""
    return [k.strip() for k in text.splitlines() if k.strip()]


def channel_key_to_use(channel) -> tuple[int | None, str | None]:
    """(position, key) a job sends with (probes, balance reads, discovery): the first key
    TokenHub has not disabled, else the first key; (None, None) without a credential. Raises
    SecretUnreadable."""
    keys = channel_api_keys(channel)
    if not keys:
        return None, None
    disabled = {}
    if len(keys) > 1:
        disabled = ChannelHealth.objects.filter(channel=channel).values_list("disabled_keys", flat=True).first() or {}
    index = next((i for i, k in enumerate(keys) if key_fingerprint(k) not in disabled), 0)
    return index, keys[index]


def channel_keys(channel) -> dict:
    """`key_count` and `keys`: each upstream key by position and fingerprint with its state:
    "ready", "cooling" (with `until` and `reason`) or "disabled" (with `reason` and `at`);
    never the key. `key_count` is None when the vault cannot open the credential."""
    if not channel.credential:
        return {"key_count": 0, "keys": []}
    try:
        fingerprints = [key_fingerprint(k) for k in channel_api_keys(channel)]
    except SecretUnreadable:
        return {"key_count": None, "keys": []}
    disabled = {}
    if len(fingerprints) > 1:
        disabled = ChannelHealth.objects.filter(channel=channel).values_list("disabled_keys", flat=True).first() or {}
    cooling = board.key_cooldowns(channel.pk) if len(fingerprints) > 1 else {}
    keys = []
    for position, fp in enumerate(fingerprints, start=1):
        row = {"position": position, "fingerprint": fp, "state": "ready"}
        if fp in disabled:
            row.update(state="disabled", reason=str(disabled[fp].get("reason", "")), at=disabled[fp].get("at"))
        elif fp in cooling:
            record = cooling[fp]
            until = datetime.fromtimestamp(record.until, tz=timezone.utc).isoformat(timespec="seconds")
            row.update(state="cooling", until=until, reason=record.reason)
        keys.append(row)
    return {"key_count": len(fingerprints), "keys": keys}


def models_for_group(*, group: str) -> list[dict]:
    """The visible models a tenant group may use, with how they are billed: for each, its
    catalog facts and the routes' billing classes and discounts (never channel names)."""
    found: dict[str, dict] = {}
    routes = ChannelModel.objects.filter(
        is_enabled=True, channel__status=Channel.Status.ENABLED, model__is_hidden=False
    ).select_related("model", "channel")
    for cm in routes:
        if group not in (cm.channel.groups or ["default"]):
            continue
        entry = found.setdefault(
            cm.model.public_id,
            {"model": cm.model.public_id, "context_window": cm.model.context_window, "max_output": cm.model.max_output,
             "billing": {}},
        )
        billing, discount = cm.channel.billing, cm.channel.discount_ratio
        entry["billing"][billing] = min(discount, entry["billing"].get(billing, discount))
    return [found[k] for k in sorted(found)]
def model_owning(*, name: str) -> tuple[str, bool] | None:
    """(public id, whether `name` is an alias of it) of the catalog model `name` names, or None."""
    if Model.objects.filter(public_id=name).exists():
        return name, False
    for model in Model.objects.exclude(aliases=[]).only("public_id", "aliases"):
        if name in (model.aliases or ()):
            return model.public_id, True
    return None
