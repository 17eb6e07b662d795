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


def model_owning(*, name: str) -> tuple[str, bool] | None:
    """(public id, whether `name` is an alias of it) of the catalog model `name` names, or None."""
    if Model.objects.filter(public_id=name).exists():
        return name, False
    for model in Model.objects.exclude(aliases=[]).only("public_id", "aliases"):
        if name in (model.aliases or ()):
            return model.public_id, True
    return None
