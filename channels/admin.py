"""The operator's routing console in the Django admin.

    Channels        live state (cooling, failure streak, last probe, last balance), with
                    actions: enable, disable with a reason, test (a tiny real request)
    Channel models  enable / disable a model on a channel (the reason goes to the admin history)
    Route tree      /admin/channels/channel/route-tree/: type -> brand -> channel -> models ->
                    primary/backup order, with health
    Simulator       /admin/channels/channel/simulator/: model, group, mode (and seed) -> ranked
                    candidates with scores, skipped ones with reasons; nothing is sent
    Request routes  /admin/channels/channel/requests/: for any request, the candidates it
                    considered, why each was skipped, and the attempts it made
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from observability.admin_audit import AuditedAdmin
from observability.selectors import channel_has_history, channels_with_history, request_logs_recent, request_trace
from observability.stats import DIMENSIONS, WINDOWS_S, stats_rolling

from .health.board import board
from .health.probes import channel_probe
from .health.status import channel_operator_set
from .keys import keys_parse, keys_text
from .models import Channel, ChannelBalanceSnapshot, ChannelHealth, ChannelModel, Model, ThompsonArm
from .netguard import base_url_problem
from .selectors import channel_keys
from .services import channel_credential_set, channel_delete, model_aliases_check, model_id_check, options_checked
from .simulator import route_tree, simulate
from .strategies import MODES

_records_cache: tuple[float, dict] = (0.0, {})


def _records() -> dict:
    """Cooldown records for one page render (one Redis scan, not one per row)."""
    global _records_cache
    if time.monotonic() - _records_cache[0] > 1.0:
        _records_cache = (time.monotonic(), board.records())
    return _records_cache[1]


def records_forget() -> None:
    """Drop the cooldown records kept for page renders: the next page reads the store (a test's
    fresh start; the cache otherwise lives a second)."""
    global _records_cache
    _records_cache = (0.0, {})


def _until(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S UTC")


def live_health(channel_id: int) -> tuple[str, str]:
    """(state, detail) of a channel from the shared health store, now."""
    now = time.time()
    own = None
    pairs = []
    keys = []  # upstream keys of a multi-key channel, by fingerprint
    for key, record in _records().items():
        if key == f"c:{channel_id}":
            own = record
        elif key.startswith(f"p:{channel_id}:"):
            pairs.append((key.split(":", 2)[2], record))
        elif key.startswith(f"k:{channel_id}:"):
            keys.append((key.split(":", 2)[2], record))
    cooling = [(m, r) for m, r in pairs if r.until > now]
    if own is not None and own.until > now:
        return "down", f"cooling until {_until(own.until)}: {own.reason} (failure {own.strikes} in a row)"
    cooling += [(f"key {fp}", r) for fp, r in keys if r.until > now]
    if cooling:
        return "degraded", "; ".join(f"{m} cooling until {_until(r.until)}: {r.reason}" for m, r in cooling)
    streak = max([r.strikes for _, r in pairs] + ([own.strikes] if own else []), default=0)
    if streak:
        return "degraded", f"recovering: {streak} failure(s) in a row before its last trial"
    return "healthy", ""


class ChannelModelInline(admin.TabularInline):
    model = ChannelModel
    extra = 0
    fields = ("model", "upstream_name", "is_enabled")
    autocomplete_fields = ("model",)


class ChannelHealthInline(admin.StackedInline):
    model = ChannelHealth
    extra = 0
    can_delete = False
    fields = ("auto_disabled_kind", "last_probe_at", "last_probe_ok", "last_probe_latency_ms", "last_probe_error", "probe_failures",
              "balance_warn_below_micros", "is_balance_low")
    readonly_fields = (
        "auto_disabled_kind",
        "last_probe_at",
        "last_probe_ok",
        "last_probe_latency_ms",
        "last_probe_error",
        "probe_failures",
        "is_balance_low",
    )


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value back (not even the one just posted, when the form
    is shown again with an error): the keys typed into it are never displayed."""

    def format_value(self, value):
        return None


class ChannelForm(forms.ModelForm):
    """The upstream credential is write-only: typed here, sealed by the vault, never shown back."""

    new_api_key = forms.CharField(
        label="New upstream API key(s)", required=False, strip=True,
        widget=WriteOnlyTextarea(attrs={"autocomplete": "off", "spellcheck": "false", "rows": 3, "class": "vLargeTextField"}),
        help_text="Write-only: one key a line (several spread the requests over them); leave empty to keep the current "
                  "credential. It is never displayed.",
    )
    clear_api_key = forms.BooleanField(label="Remove the credential", required=False)

    class Meta:
        model = Channel
        exclude = ("credential",)

    def clean_new_api_key(self):
        text = self.cleaned_data.get("new_api_key") or ""
        try:
            return keys_text(keys_parse(text))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class DisableForm(forms.Form):
    reason = forms.CharField(max_length=250, help_text="Shown to operators beside what was disabled.")


def disable_with_reason(model_admin, request, queryset, *, action: str, noun: str, disable) -> TemplateResponse | None:
    """What every "disable, with a reason" action does: first a page that lists what will stop
    and asks why; once answered, `disable(obj, reason)` for each, noted in the admin history."""
    form = DisableForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        reason = form.cleaned_data["reason"]
        for obj in queryset:
            disable(obj, reason)
            model_admin.log_change(request, obj, f"Disabled: {reason}")
        model_admin.message_user(request, f"Disabled {queryset.count()} {noun}(s): {reason}", messages.SUCCESS)
        return None
    return TemplateResponse(
        request,
        "admin/channels/disable_reason.html",
        {**model_admin.admin_site.each_context(request), "title": f"Disable {noun}s", "objects": queryset, "form": form,
         "action": action, "opts": model_admin.model._meta, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME},
    )


class ChannelFormChecked(ChannelForm):
    """A base URL typed into the admin gets the same check as one given to add_channel."""

    def clean(self):
        data = super().clean()
        base_url = data.get("base_url")
        if base_url and data.get("provider_type", getattr(self.instance, "provider_type", "")) != "simulated":
            problem = base_url_problem(base_url, is_saving=True)
            if problem:
                self.add_error("base_url", problem)
        if "options" in data:
            try:
                options_checked(data["options"])
            except ValueError as error:
                self.add_error("options", str(error))
        return data


@admin.register(Channel)
class ChannelAdmin(AuditedAdmin):
    list_display = (
        "name",
        "provider_type",
        "brand",
        "priority",
        "weight",
        "billing",
        "status_column",
        "health_column",
        "probe_column",
        "balance_column",
    )
    list_filter = ("status", "provider_type", "brand", "billing")
    search_fields = ("name", "brand", "base_url")
    ordering = ("-priority", "name")
    form = ChannelFormChecked
    exclude = ("credential",)  # a vault token: set through the write-only field below, never shown
    readonly_fields = ("status", "status_reason", "status_changed_at", "created_at", "updated_at")
    inlines = (ChannelModelInline, ChannelHealthInline)
    actions = ("enable_channels", "disable_channels", "test_channels", "delete_unused_channels")
    change_list_template = "admin/channels/channel/change_list.html"

    @admin.display(description="credential")
    def credential_state(self, channel):
        if not channel.credential:
            return "none"
        described = channel_keys(channel)
        if described["key_count"] is None:
            return "set (hidden; the vault is locked)"
        if described["key_count"] == 1:
            return "set (hidden)"
        states = "; ".join(
            f"{k['position']}: {k['fingerprint']} {k['state']}" + (f" until {k['until']}" if k.get("until") else "")
            + (f" ({k['reason']})" if k.get("reason") else "")
            for k in described["keys"]
        )
        return f"set (hidden): {described['key_count']} keys by fingerprint — {states}"

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "credential_state")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("new_api_key"):
            channel_credential_set(channel=obj, api_key=form.cleaned_data["new_api_key"])
            self.message_user(request, f"The credential of {obj.name} was replaced.", messages.SUCCESS)
        elif form.cleaned_data.get("clear_api_key"):
            channel_credential_set(channel=obj, api_key="")

    def has_delete_permission(self, request, obj=None):
        # a channel that served requests is kept: its logs point at it (disable it instead)
        if obj is not None and channel_has_history(channel_id=obj.pk):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would delete channels with history too
        return actions

    @admin.action(description="Delete selected channels that never served a request", permissions=["delete"])
    def delete_unused_channels(self, request, queryset):
        with_history = channels_with_history(channel_ids=[c.pk for c in queryset])
        kept = [c.name for c in queryset if c.pk in with_history]
        unused = [c for c in queryset if c.pk not in with_history]
        if unused:
            self.log_deletions(request, unused)
        for channel in unused:
            channel_delete(channel=channel)  # checks the history again, inside its transaction
        if kept:
            self.message_user(request, f"Kept (they have request history; disable them instead): {', '.join(kept)}.", messages.WARNING)

    def get_queryset(self, request):
        newest = ChannelBalanceSnapshot.objects.filter(channel=OuterRef("pk")).order_by("-created_at")
        return (
            super().get_queryset(request)
            .select_related("health")
            .annotate(balance_micros=Subquery(newest.values("amount_micros")[:1]), balance_currency=Subquery(newest.values("currency")[:1]))
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, channel):
        if channel.status == Channel.Status.ENABLED:
            return mark_safe('<span style="color:#070">enabled</span>')
        since = channel.status_changed_at.strftime("%Y-%m-%d %H:%M UTC") if channel.status_changed_at else "?"
        return format_html(
            '<span style="color:#b00">disabled</span> since {}<br><small>{}</small>', since, channel.status_reason or "no reason given"
        )

    @admin.display(description="health (live)")
    def health_column(self, channel):
        if channel.status != Channel.Status.ENABLED:
            return "—"
        state, detail = live_health(channel.pk)
        colour = {"healthy": "#070", "degraded": "#b60", "down": "#b00"}[state]
        return format_html('<span style="color:{}">{}</span><br><small>{}</small>', colour, state, detail)

    @admin.display(description="last probe")
    def probe_column(self, channel):
        health = getattr(channel, "health", None)
        if health is None or health.last_probe_at is None:
            return "—"
        outcome = f"ok, {health.last_probe_latency_ms} ms" if health.last_probe_ok else f"failed: {health.last_probe_error}"
        return format_html("{}<br><small>{}</small>", outcome, health.last_probe_at.strftime("%Y-%m-%d %H:%M UTC"))

    @admin.display(description="upstream balance")
    def balance_column(self, channel):
        if channel.balance_micros is None:
            return "—"
        health = getattr(channel, "health", None)
        low = " (low)" if health is not None and health.is_balance_low else ""
        return f"{channel.balance_micros / 1_000_000:.2f} {channel.balance_currency}{low}"

    @admin.action(description="Enable selected channels", permissions=["change"])
    def enable_channels(self, request, queryset):
        for channel in queryset:
            channel_operator_set(channel=channel, is_enabled=True)
            self.log_change(request, channel, "Enabled (and its cooldowns forgotten).")
        self.message_user(request, f"Enabled {queryset.count()} channel(s).", messages.SUCCESS)

    @admin.action(description="Disable selected channels, with a reason…", permissions=["change"])
    def disable_channels(self, request, queryset):
        def disable(channel, reason):
            channel_operator_set(channel=channel, is_enabled=False, reason=reason)

        return disable_with_reason(self, request, queryset, action="disable_channels", noun="channel", disable=disable)

    @admin.action(description="Test selected channels (sends a tiny real request)", permissions=["change"])
    def test_channels(self, request, queryset):
        for channel in queryset:
            result = channel_probe(channel_id=channel.pk)
            if result.is_ok:
                extra = " and re-enabled" if result.re_enabled else ""
                self.message_user(request, f"{channel.name} / {result.model}: answered in {result.latency_ms} ms{extra}.", messages.SUCCESS)
            else:
                extra = " It has been disabled." if result.disabled else ""
                self.message_user(
                    request, f"{channel.name} / {result.model}: failed after {result.latency_ms} ms: {result.error}.{extra}", messages.ERROR
                )

    # pages

    def get_urls(self):
        own = [
            path("route-tree/", self.admin_site.admin_view(self.route_tree_view), name="channels_route_tree"),
            path("simulator/", self.admin_site.admin_view(self.simulator_view), name="channels_simulator"),
            path("requests/", self.admin_site.admin_view(self.requests_view), name="channels_requests"),
            path("stats/", self.admin_site.admin_view(self.stats_view), name="channels_stats"),
        ]
        return own + super().get_urls()

    def _page(self, request, template: str, title: str, **context):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request, template, {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta, **context}
        )

    def route_tree_view(self, request):
        return self._page(request, "admin/channels/route_tree.html", "Route tree", tree=route_tree())

    def simulator_view(self, request):
        form = SimulatorForm(request.GET or None)
        result, error = None, ""
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                result = simulate(model=data["model"], group=data["group"] or "default", mode=data["mode"] or None, seed=data["seed"])
            except ValueError as exc:
                error = str(exc)
        return self._page(request, "admin/channels/simulator.html", "Routing simulator", form=form, result=result, error=error)

    def requests_view(self, request):
        request_id = (request.GET.get("request_id") or "").strip()
        selected, rewards = request_trace(request_id=request_id)
        recent = [] if selected else request_logs_recent(limit=50)
        return self._page(request, "admin/channels/requests.html", "Why requests went where they went",
                          selected=selected, rewards=rewards, recent=recent, request_id=request_id)

    def stats_view(self, request):
        dimension = request.GET.get("by") if request.GET.get("by") in DIMENSIONS else "model"
        window = request.GET.get("window") if request.GET.get("window") in WINDOWS_S else "1h"
        cost_ratios = dict(Channel.objects.values_list("id", "cost_ratio"))
        rows = stats_rolling(dimension=dimension, window=window, cost_ratios=cost_ratios)
        return self._page(request, "admin/channels/stats.html", "Rolling statistics", rows=rows,
                          dimension=dimension, window=window, dimensions=list(DIMENSIONS), windows=list(WINDOWS_S))


class SimulatorForm(forms.Form):
    model = forms.CharField(max_length=200, help_text="public model id or alias")
    group = forms.CharField(max_length=50, required=False, initial="default")
    mode = forms.ChoiceField(choices=[("", "the group's default")] + [(m, m) for m in MODES], required=False)
    seed = forms.IntegerField(required=False, help_text="fix the random draws; the router seeded alike chooses the same")


class CatalogModelForm(forms.ModelForm):
    """The checks set_model and add_channel get: an id that is no other model's alias, aliases
    that are no model's id and no other model's alias."""

    class Meta:
        model = Model
        fields = "__all__"

    def _saved(self) -> Model | None:
        return self.instance if self.instance.pk else None  # its fields still hold the saved values here

    def clean_public_id(self):
        try:
            return model_id_check(public_id=self.cleaned_data["public_id"], model=self._saved())
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self):
        data = super().clean()
        if "public_id" in data and "aliases" in data:
            try:
                data["aliases"] = model_aliases_check(public_id=data["public_id"], aliases=data["aliases"] or [], model=self._saved())
            except ValueError as error:
                self.add_error("aliases", str(error))
        return data


@admin.register(Model)
class ModelAdmin(AuditedAdmin):
    form = CatalogModelForm
    list_display = ("public_id", "context_window", "max_output", "is_hidden", "aliases")
    search_fields = ("public_id",)
    list_filter = ("is_hidden",)


@admin.register(ChannelModel)
class ChannelModelAdmin(AuditedAdmin):
    list_display = ("channel", "model", "upstream_name", "is_enabled", "disabled_because", "health_column")
    list_filter = ("is_enabled", "channel")
    search_fields = ("channel__name", "model__public_id", "upstream_name")
    autocomplete_fields = ("model",)
    list_select_related = ("channel", "model")
    actions = ("enable_routes", "disable_routes")

    @admin.display(description="disabled because")
    def disabled_because(self, link):
        return "" if link.is_enabled else last_disable_reason(link)

    @admin.display(description="health (live)")
    def health_column(self, link):
        view = board.view(link.model.public_id, [link.channel_id])
        cooldown = view.cooldown(link.channel_id, link.model.public_id)
        state = view.state(link.channel_id, link.model.public_id)
        if cooldown is None:
            return state
        return f"{state}: cooling until {_until(cooldown.until)} ({cooldown.reason})"

    @admin.action(description="Enable selected channel models", permissions=["change"])
    def enable_routes(self, request, queryset):
        for link in queryset.select_related("channel", "model"):
            link.is_enabled = True
            link.save(update_fields=["is_enabled"])
            board.reset(link.channel_id, link.model.public_id)
            self.log_change(request, link, "Enabled.")
        self.message_user(request, f"Enabled {queryset.count()} channel model(s).", messages.SUCCESS)

    @admin.action(description="Disable selected channel models, with a reason…", permissions=["change"])
    def disable_routes(self, request, queryset):
        def disable(link, reason):  # the reason is kept in the admin history (`disabled_because`)
            link.is_enabled = False
            link.save(update_fields=["is_enabled"])

        return disable_with_reason(self, request, queryset, action="disable_routes", noun="channel model", disable=disable)


def last_disable_reason(link: ChannelModel) -> str:
    """The reason an operator gave when disabling this channel model (from the admin history)."""
    entry = (
        LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(ChannelModel), object_id=str(link.pk), action_flag=CHANGE)
        .order_by("-action_time")
        .first()
    )
    return entry.get_change_message() if entry else ""


@admin.register(ChannelBalanceSnapshot)
class ChannelBalanceSnapshotAdmin(AuditedAdmin):
    list_display = ("channel", "amount", "currency", "source", "created_at")
    list_filter = ("channel", "source")
    date_hierarchy = "created_at"

    @admin.display(description="amount", ordering="amount_micros")
    def amount(self, snapshot):
        return f"{snapshot.amount_micros / 1_000_000:.2f}"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ThompsonArm)
class ThompsonArmAdmin(AuditedAdmin):
    list_display = ("channel", "model", "alpha", "beta", "mean", "attempts", "computed_at")
    list_filter = ("channel",)

    @admin.display(description="success rate (posterior mean)")
    def mean(self, arm):
        return f"{arm.alpha / (arm.alpha + arm.beta):.3f}"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

