"""One mixin that puts every admin mutation in the audit log: the add and change forms and
list edits (Django calls `log_addition` / `log_change` after each save), deletions
(`log_deletions`, the delete view and the "delete selected" action alike) and every custom
action (wrapped: the selected objects are read before and after, one record per object the
action changed). Every ModelAdmin of ours derives from `AuditedAdmin`; a test walks the admin
registry to hold that."""

from __future__ import annotations

import functools

from django.contrib import admin

from .redact import model_fields
from .services import audit_record

_BEFORE = "_audit_before"  # request attribute: {(label, pk): fields} read when the form opened
_IN_ACTION = "_audit_in_action"  # request attribute: an action is being recorded as a whole


def actor_of(request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    return "anonymous"


def _label(obj) -> str:
    return obj._meta.label_lower


def _stored(obj) -> dict:
    """What the database holds now (a save_model may store through a service, not the form's object)."""
    stored = type(obj)._default_manager.filter(pk=obj.pk).first()
    return model_fields(stored if stored is not None else obj)


class AuditedAdmin(admin.ModelAdmin):
    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            getattr(request, _BEFORE, None) or setattr(request, _BEFORE, {})
            getattr(request, _BEFORE)[(_label(obj), str(obj.pk))] = model_fields(obj)
        return obj

    def _audit(self, request, obj, action: str, *, before: dict | None, after: dict | None) -> None:
        audit_record(
            actor=actor_of(request), action=action, target_type=_label(obj), target_id=obj.pk,
            before=before, after=after, target_repr=str(obj),
        )

    def log_addition(self, request, obj, message):
        if obj.pk is not None and not getattr(request, _IN_ACTION, False):
            self._audit(request, obj, "admin.add", before=None, after=_stored(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        if not getattr(request, _IN_ACTION, False):
            before = (getattr(request, _BEFORE, None) or {}).get((_label(obj), str(obj.pk)))
            self._audit(request, obj, "admin.change", before=before, after=_stored(obj))
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        if not getattr(request, _IN_ACTION, False):
            for obj in queryset:
                self._audit(request, obj, "admin.delete", before=model_fields(obj), after=None)
        return super().log_deletions(request, queryset)

    def get_actions(self, request):
        actions = super().get_actions(request)
        return {
            name: (func if name == "delete_selected" else self._audited_action(func, name), name, description)
            for name, (func, name, description) in actions.items()
        }

    def _audited_action(self, func, name: str):
        @functools.wraps(func)
        def run(modeladmin, request, queryset):
            before = {str(obj.pk): model_fields(obj) for obj in queryset}
            setattr(request, _IN_ACTION, True)
            try:
                response = func(modeladmin, request, queryset)
            finally:
                setattr(request, _IN_ACTION, False)
            for obj in queryset.model._default_manager.filter(pk__in=list(before)):
                after = model_fields(obj)
                if after != before[str(obj.pk)]:  # an intermediate page (a form) changed nothing
                    self._audit(request, obj, f"admin.action.{name}", before=before[str(obj.pk)], after=after)
            return response

        return run
