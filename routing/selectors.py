from __future__ import annotations

from .models import Model


def model_ids_existing(*, ids: list[str]) -> set[str]:
    """Which of these public ids (or aliases) name a model in the catalog."""
    found = set(Model.objects.filter(public_id__in=ids).values_list("public_id", flat=True))
    missing = set(ids) - found
    if missing:
        for model in Model.objects.exclude(aliases=[]).only("aliases"):
            found |= missing & set(model.aliases or ())
    return found


def models_for_group(*, group: str) -> list[dict]:
    """The visible models a tenant group may use, with how they are billed: for each, its
    catalog facts and the routes' billing classes and discounts (never channel names)."""
    from .models import Channel, ChannelModel

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
