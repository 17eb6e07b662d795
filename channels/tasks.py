"""Background jobs. Celery runs them (worker + beat) when a broker is configured; otherwise the
web process runs the same functions on the same schedule (relay.jobs). Each returns a small
dict of counts, which is what the worker logs and the tests read.

    routing.probe_channels     error-rate sweep, then a tiny real request to every channel
                               or route in a failure streak and every channel TokenHub
                               disabled; success re-enables (half-open -> closed)
    routing.thompson_refresh   Beta posteriors per route from the reward logs
    routing.balance_monitor    upstream balances where the brand has an endpoint: history,
                               warning below the threshold, disabled at zero, re-enabled above
    routing.pricing_sync       PRICING_SYNC_SOURCE -> proposed (or applied) prices, with markup;
                               fills missing context windows
    routing.retention          request logs, reward logs and balance history past their age
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings

from billing.alerts import operator_alert_queue
from billing.sync import markup_parse, prices_sync, pricing_document_parse, pricing_document_read, source_lookup
from common.db import delete_in_batches
from observability.services import logs_delete_before

from . import upstream
from .health.probes import channel_probe, channels_to_probe
from .health.status import channel_auto_disable, channel_auto_enable
from .health.sweep import error_rate_sweep
from .models import Channel, ChannelBalanceSnapshot, ChannelHealth, ChannelModel, DisableKind, Model
from .netguard import base_url_problem
from .selectors import channel_key_to_use
from .thompson import arms_refresh

log = logging.getLogger(__name__)


# --- probes ---------------------------------------------------------------------------------


def probes_run(*, limit: int = 50) -> dict:
    disabled = error_rate_sweep()
    results = [channel_probe(channel_id=c, model=m) for c, m in channels_to_probe(limit=limit)]
    return {
        "disabled_for_error_rate": len(disabled),
        "probed": len(results),
        "ok": sum(r.is_ok for r in results),
        "re_enabled": sum(r.re_enabled for r in results),
        "results": [r.as_dict() for r in results],
    }


@shared_task(name="channels.probe_channels")
def probe_channels() -> dict:
    return probes_run()


@shared_task(name="channels.thompson_refresh")
def thompson_refresh() -> dict:
    return arms_refresh()


# --- balances -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceReading:
    amount_micros: int
    currency: str
    source: str


def _micros(value) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"balance {value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"balance {value!r} is not a number")
    return int((amount * 1_000_000).to_integral_value(rounding=ROUND_HALF_UP))


def _host_root(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


def _read_openai_billing(client, base_url: str, *, subtract_usage: bool) -> BalanceReading:
    """OpenAI's old dashboard billing routes, as One API / New API (and TokenHub) serve them.
    One API reports the total granted as hard_limit_usd and the spending as total_usage
    (hundredths of a USD); `openai_subscription` channels report what is left as hard_limit_usd."""
    subscription = client.get(f"{base_url}/dashboard/billing/subscription")
    subscription.raise_for_status()
    hard_limit = Decimal(str(subscription.json()["hard_limit_usd"]))
    if not subtract_usage:
        return BalanceReading(_micros(hard_limit), "USD", "openai_subscription")
    today = date.today()
    usage = client.get(
        f"{base_url}/dashboard/billing/usage",
        # this month: TokenHub's hard_limit_usd is what is left plus this month's spending; One API
        # and New API ignore the window and report all spending against their all-time total
        params={"start_date": today.replace(day=1).isoformat(), "end_date": (today + timedelta(days=1)).isoformat()},
    )
    usage.raise_for_status()
    used = Decimal(str(usage.json().get("total_usage", 0))) / 100
    return BalanceReading(_micros(hard_limit - used), "USD", "openai_billing")


def _read_deepseek(client, base_url: str) -> BalanceReading:
    response = client.get(f"{_host_root(base_url)}/user/balance")
    response.raise_for_status()
    infos = response.json().get("balance_infos") or []
    if not infos:
        raise ValueError("DeepSeek answered no balance_infos")
    info = infos[0]
    return BalanceReading(_micros(info["total_balance"]), str(info.get("currency", "CNY"))[:3].upper(), "deepseek")


def _read_openrouter(client, base_url: str) -> BalanceReading:
    response = client.get(f"{base_url}/credits")
    response.raise_for_status()
    data = response.json()["data"]
    return BalanceReading(_micros(Decimal(str(data["total_credits"])) - Decimal(str(data["total_usage"]))), "USD", "openrouter")


def _read_siliconflow(client, base_url: str) -> BalanceReading:
    response = client.get(f"{base_url}/user/info")
    response.raise_for_status()
    return BalanceReading(_micros(response.json()["data"]["totalBalance"]), "CNY", "siliconflow")


def _read_moonshot(client, base_url: str) -> BalanceReading:
    response = client.get(f"{base_url}/users/me/balance")
    response.raise_for_status()
    currency = "USD" if (urlsplit(base_url).hostname or "").endswith(".ai") else "CNY"
    return BalanceReading(_micros(response.json()["data"]["available_balance"]), currency, "moonshot")


BALANCE_READERS = {
    "openai_billing": lambda c, u: _read_openai_billing(c, u, subtract_usage=True),
    "openai_subscription": lambda c, u: _read_openai_billing(c, u, subtract_usage=False),
    "deepseek": _read_deepseek,
    "openrouter": _read_openrouter,
    "siliconflow": _read_siliconflow,
    "moonshot": _read_moonshot,
}
_BY_HOST = {
    "deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "siliconflow.cn": "siliconflow",
    "moonshot.cn": "moonshot",
    "moonshot.ai": "moonshot",
}


def balance_reader_for(channel) -> str | None:
    """Which endpoint tells this channel's balance: `options.balance_endpoint` when set ("none"
    turns it off), else by brand or host; other OpenAI-compatible upstreams are asked through
    the dashboard billing routes. OpenAI itself no longer answers those to API keys."""
    explicit = (channel.options or {}).get("balance_endpoint")
    if explicit:
        return explicit if explicit in BALANCE_READERS else None
    brand = (channel.brand or "").lower()
    if brand in BALANCE_READERS:
        return brand
    host = (urlsplit(channel.base_url).hostname or "").lower()
    for suffix, reader in _BY_HOST.items():
        if host == suffix or host.endswith("." + suffix):
            return reader
    if channel.provider_type == "openai" and host != "api.openai.com" and brand not in ("openai", "azure"):
        return "openai_billing"
    return None


def channel_balance_read(channel) -> BalanceReading:
    reader = balance_reader_for(channel)
    if reader is None:
        raise LookupError(f"channel {channel.name} has no balance endpoint")
    problem = base_url_problem(channel.base_url)
    if problem:
        raise ValueError(problem)
    _, api_key = channel_key_to_use(channel)  # keys of one account share its balance: the first usable one
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with upstream.sync_client_make(timeout=10.0, headers=headers) as client:
        return BALANCE_READERS[reader](client, channel.base_url.rstrip("/"))


def balances_check() -> dict:
    """Read every channel's upstream balance that can be read; keep the history; warn below
    the threshold; disable at zero or less; re-enable a channel disabled for its balance once
    the balance is back above zero."""
    warn_default = _micros(settings.BALANCE_WARN_BELOW)
    counts = {"read": 0, "failed": 0, "low": 0, "disabled": 0, "re_enabled": 0, "skipped": 0}
    for channel in Channel.objects.exclude(provider_type="simulated").order_by("id"):
        health, _ = ChannelHealth.objects.get_or_create(channel=channel)
        if channel.status == Channel.Status.DISABLED and health.auto_disabled_kind != DisableKind.BALANCE:
            counts["skipped"] += 1  # an operator's (or another) decision: not ours to revisit
            continue
        if balance_reader_for(channel) is None:
            counts["skipped"] += 1
            continue
        try:
            reading = channel_balance_read(channel)
        except Exception as exc:
            counts["failed"] += 1
            log.info("balance of channel %s could not be read: %s", channel.name, exc)
            continue
        counts["read"] += 1
        ChannelBalanceSnapshot.objects.create(
            channel=channel, amount_micros=reading.amount_micros, currency=reading.currency, source=reading.source
        )
        threshold = health.balance_warn_below_micros if health.balance_warn_below_micros is not None else warn_default
        is_low = reading.amount_micros < threshold
        if is_low and not health.is_balance_low:
            log.warning("channel %s balance is low: %s %s", channel.name, reading.amount_micros / 1_000_000, reading.currency)
            operator_alert_queue(
                kind="channel_balance_low",
                subject=f"Channel {channel.name}'s upstream balance is low: "
                f"{Decimal(reading.amount_micros) / 1_000_000:f} {reading.currency}",
                payload={
                    "channel_id": channel.pk,
                    "channel": channel.name,
                    "amount_micros": reading.amount_micros,
                    "currency": reading.currency,
                },
            )
        if is_low != health.is_balance_low:
            health.is_balance_low = is_low
            health.save(update_fields=["is_balance_low", "updated_at"])
        counts["low"] += is_low
        amount = f"{Decimal(reading.amount_micros) / 1_000_000:f} {reading.currency}"
        if reading.amount_micros <= 0 and channel.status == Channel.Status.ENABLED:
            counts["disabled"] += channel_auto_disable(
                channel_id=channel.pk, kind=DisableKind.BALANCE, reason=f"balance at the upstream is {amount}"
            )
        elif reading.amount_micros > 0 and health.auto_disabled_kind == DisableKind.BALANCE:
            counts["re_enabled"] += channel_auto_enable(
                channel_id=channel.pk, why=f"balance is back to {amount}", kinds=(DisableKind.BALANCE,)
            )
    return counts


@shared_task(name="channels.balance_monitor")
def balance_monitor() -> dict:
    return balances_check()


# --- pricing ----------------------------------------------------------------------------------


def catalog_names() -> dict[str, list[str]]:
    """Each public model id with the names a price list may know it by: its own id, its
    aliases, then the upstream names its channels use (also as brand/name)."""
    names: dict[str, list[str]] = {m.public_id: [m.public_id, *(m.aliases or [])] for m in Model.objects.all()}
    for cm in ChannelModel.objects.select_related("channel", "model"):
        listed = names.setdefault(cm.model.public_id, [cm.model.public_id])
        for name in (cm.upstream_name, f"{cm.channel.brand}/{cm.upstream_name}", f"{cm.channel.brand}/{cm.model.public_id}"):
            if name not in listed:
                listed.append(name)
    return names


def prices_sync_from_source(*, source: str, markup: str = "1", apply: bool = False) -> dict:
    """billing's sync over our whole catalog, then the context limits the catalog lacks."""
    markup_parse(markup)  # a bad argument is refused before anything is fetched
    document = pricing_document_read(source=source)
    names = catalog_names()
    report = prices_sync(source=source, markup=markup, apply=apply, names=names, document=document).as_dict()
    parsed = pricing_document_parse(document)
    filled = 0
    for model in Model.objects.filter(public_id__in=list(names)):
        entry = source_lookup(parsed, names[model.public_id])
        if entry is None:
            continue
        changed = []
        if model.context_window is None and entry.context_window:
            model.context_window, changed = entry.context_window, changed + ["context_window"]
        if model.max_output is None and entry.max_output:
            model.max_output, changed = entry.max_output, changed + ["max_output"]
        if changed:
            model.save(update_fields=changed)
            filled += 1
    report["context_filled"] = filled
    return report


@shared_task(name="channels.pricing_sync")
def pricing_sync() -> dict:
    if not settings.PRICING_SYNC_SOURCE:
        return {"skipped": "PRICING_SYNC_SOURCE is not set"}
    report = prices_sync_from_source(
        source=settings.PRICING_SYNC_SOURCE, markup=settings.PRICING_SYNC_MARKUP, apply=settings.PRICING_SYNC_APPLY
    )
    return {k: (len(v) if isinstance(v, list) else v) for k, v in report.items()}


# --- retention --------------------------------------------------------------------------------


def logs_prune(*, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    logs_before = now - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
    balances_before = now - timedelta(days=settings.BALANCE_SNAPSHOT_RETENTION_DAYS)
    return {
        **logs_delete_before(before=logs_before),
        "balance_snapshots": delete_in_batches(ChannelBalanceSnapshot.objects.filter(created_at__lt=balances_before)),
    }


@shared_task(name="channels.retention")
def retention() -> dict:
    return logs_prune()
