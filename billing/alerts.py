"""Alerts (services): low-balance alerts to a tenant's owners, and channel alerts to operators.

    alert_settings_set    a tenant's thresholds and optional webhook (its signing secret made once)
    low_balances_check    one alert per crossing below a threshold; the flag resets once the
                          balance is back at or above it (a top-up), so the next crossing alerts again
    operator_alert_queue  routing's channel auto-disable and low channel balance, for operators
    alerts_send           delivers pending alerts by email and signed webhook

Alerts are rows (an outbox) written where the event happens and delivered by the periodic job
(`billing.alerts`, Celery beat or the embedded runner), never on a request's path. A webhook's
body is JSON; header `X-TokenHub-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`.
Webhook URLs that resolve to internal addresses are refused unless TOKENHUB_UPSTREAM_ALLOW_CIDRS
allows them (a tenant must not make us POST into our own network).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from accounts.selectors import tenant_owner_emails

from .models import Alert, AlertSettings, Balance
from .money import format_micros, parse_micros
from .services import BALANCE_LABEL

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-TokenHub-Signature"
MAX_ATTEMPTS = 5
WEBHOOK_TIMEOUT_S = 10.0


def alert_settings_get(*, tenant_id: int) -> AlertSettings | None:
    return AlertSettings.objects.filter(tenant_id=tenant_id).first()


def webhook_url_problem(url: str) -> str | None:
    """Why alerts may not be posted to this URL, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook URL must be an http(s) URL with a host"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return f"webhook host {parts.hostname!r} does not resolve"
    allowed = [ipaddress.ip_network(c.strip(), strict=False) for c in settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS if c.strip()]
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        internal = address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified or address.is_reserved
        if internal and not any(address in network for network in allowed):
            return f"webhook host {parts.hostname!r} resolves to an internal address"
    return None


def _threshold(text: str, *, what: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    micros = parse_micros(text, what=what)
    if micros <= 0:
        raise ValueError(f"{what} must be positive (or empty for no alert)")
    return micros


@transaction.atomic
def alert_settings_set(*, tenant_id: int, credit_below: str, wallet_below: str, webhook_url: str) -> tuple[AlertSettings, str]:
    """Set a tenant's thresholds (currency units; empty: no alert) and webhook URL (empty: none).
    Returns the settings and the webhook secret when one was just made ('' otherwise): the only
    time it is shown."""
    credit_micros = _threshold(credit_below, what="Credit threshold")
    wallet_micros = _threshold(wallet_below, what="Wallet threshold")
    webhook_url = (webhook_url or "").strip()
    if webhook_url and (problem := webhook_url_problem(webhook_url)):
        raise ValueError(problem)
    row, _ = AlertSettings.objects.select_for_update().get_or_create(tenant_id=tenant_id)
    new_secret = ""
    if webhook_url and not row.webhook_secret:
        new_secret = row.webhook_secret = secrets.token_hex(32)
    if row.credit_below_micros != credit_micros:
        row.credit_is_low = False  # a new threshold: its first crossing alerts
    if row.wallet_below_micros != wallet_micros:
        row.wallet_is_low = False
    row.credit_below_micros, row.wallet_below_micros, row.webhook_url = credit_micros, wallet_micros, webhook_url
    row.save()
    return row, new_secret


def low_balances_check() -> dict:
    """Queue one low-balance alert per crossing. Safe beside another run: the flag flips by a
    conditional update, so one of them queues the alert."""
    counts = {"queued": 0, "reset": 0}
    for row in AlertSettings.objects.exclude(credit_below_micros__isnull=True, wallet_below_micros__isnull=True):
        balances = {b.kind: b for b in Balance.objects.filter(tenant_id=row.tenant_id)}
        for kind in ("credit", "wallet"):
            threshold = getattr(row, f"{kind}_below_micros")
            balance = balances.get(kind)
            if threshold is None or balance is None:
                continue
            is_low = balance.amount_micros < threshold
            flag = f"{kind}_is_low"
            with transaction.atomic():
                changed = AlertSettings.objects.filter(pk=row.pk, **{flag: not is_low}).update(**{flag: is_low})
                if changed and is_low:
                    Alert.objects.create(
                        tenant_id=row.tenant_id,
                        kind=Alert.Kind.LOW_BALANCE,
                        subject=f"Your TokenHub {BALANCE_LABEL[kind]} balance is low",
                        payload={
                            "type": "balance.low",
                            "tenant_id": row.tenant_id,
                            "balance": kind,
                            "currency": balance.currency,
                            "amount_micros": balance.amount_micros,
                            "threshold_micros": threshold,
                            "text": (
                                f"Your {BALANCE_LABEL[kind]} balance is {format_micros(balance.amount_micros)} {balance.currency}, "
                                f"below the {format_micros(threshold)} {balance.currency} you set. Top up to keep your keys working."
                            ),
                        },
                    )
                    counts["queued"] += 1
                elif changed:
                    counts["reset"] += 1
    return counts


def operator_alert_queue(*, kind: str, subject: str, payload: dict) -> Alert | None:
    """An alert for operators (channel auto-disabled, low channel balance); None when no
    operator channel is configured."""
    if not settings.OPERATOR_ALERT_EMAILS and not settings.OPERATOR_ALERT_WEBHOOK_URL:
        return None
    return Alert.objects.create(tenant=None, kind=kind, subject=subject[:300], payload={"type": kind, **payload, "text": subject})


def webhook_signature(*, body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(url: str, secret: str, payload: dict) -> None:
    if problem := webhook_url_problem(url):
        raise ValueError(problem)
    body = json.dumps({**payload, "sent_at": timezone.now().isoformat()}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[SIGNATURE_HEADER] = webhook_signature(body=body, secret=secret)
    response = httpx.post(url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False)
    if response.status_code >= 300:
        raise ValueError(f"webhook answered {response.status_code}")


def _deliver(alert: Alert) -> None:
    if alert.tenant_id is None:
        emails, url, secret = settings.OPERATOR_ALERT_EMAILS, settings.OPERATOR_ALERT_WEBHOOK_URL, settings.OPERATOR_ALERT_WEBHOOK_SECRET
    else:
        row = alert_settings_get(tenant_id=alert.tenant_id)
        emails = tenant_owner_emails(tenant_id=alert.tenant_id)
        url, secret = (row.webhook_url, row.webhook_secret) if row else ("", "")
    if emails:
        send_mail(alert.subject, alert.payload.get("text", alert.subject), settings.ALERT_FROM_EMAIL, emails)
    if url:
        _post(url, secret, alert.payload)


def alerts_send(*, limit: int = 100) -> dict:
    counts = {"sent": 0, "failed": 0, "retrying": 0}
    skip_locked = connection.features.has_select_for_update_skip_locked
    for alert_id in list(Alert.objects.filter(status=Alert.Status.PENDING).order_by("id").values_list("id", flat=True)[:limit]):
        with transaction.atomic():
            alert = Alert.objects.select_for_update(skip_locked=skip_locked).filter(pk=alert_id, status=Alert.Status.PENDING).first()
            if alert is None:
                continue  # another sender has it
            try:
                _deliver(alert)
            except Exception as exc:
                alert.attempts += 1
                alert.last_error = f"{type(exc).__name__}: {exc}"[:500]
                alert.status = Alert.Status.FAILED if alert.attempts >= MAX_ATTEMPTS else Alert.Status.PENDING
                counts["failed" if alert.status == Alert.Status.FAILED else "retrying"] += 1
                log.warning("alert %s not delivered: %s", alert.pk, alert.last_error)
            else:
                alert.attempts += 1
                alert.status, alert.sent_at, alert.last_error = Alert.Status.SENT, timezone.now(), ""
                counts["sent"] += 1
            alert.save(update_fields=["attempts", "status", "sent_at", "last_error"])
    return counts
