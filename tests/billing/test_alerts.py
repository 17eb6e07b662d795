"""Alerts: a tenant's owners get one low-balance email per crossing of the threshold they set
(reset once topped up above it), optionally a webhook signed with the tenant's secret;
operators get channel auto-disable and low channel balance alerts. The periodic job sends them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from billing.alerts import alert_settings_set, alerts_send, low_balances_check, webhook_signature
from billing.models import Alert
from billing.services import balance_credit
from relay.jobs import Runner
from tests.billing.conftest import Portal, make_user
from tests.conftest import make_channel, make_tenant
from tests.fakes.base import read_body
from tests.fakes.server import ServerThread


class Receiver:
    """A webhook endpoint on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.received.append(({k.decode().lower(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def receiver():
    app = Receiver()
    server = ServerThread(app).start()
    app.url = server.url + "/hook"
    yield app
    server.stop()


def _spend(tenant, amount_micros: int, key: str) -> None:
    balance_credit(tenant_id=tenant.pk, kind="credit", amount_micros=amount_micros, idempotency_key=key, entry_kind="usage")


def test_one_email_per_crossing_and_again_after_a_top_up(transactional_db, mailoutbox):
    tenant = make_tenant("thrifty", credit="100", wallet=None)
    make_user("thrifty-owner", tenant, email="owner@thrifty.example")
    make_user("thrifty-member", tenant, role="member", email="member@thrifty.example")
    alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url="")
    assert low_balances_check() == {"queued": 0, "reset": 0}
    _spend(tenant, -95_000_000, "u1")
    assert low_balances_check()["queued"] == 1
    _spend(tenant, -1_000_000, "u2")
    assert low_balances_check()["queued"] == 0  # still below: not once per request
    assert alerts_send() == {"sent": 1, "failed": 0, "retrying": 0}
    (mail,) = mailoutbox
    assert mail.to == ["owner@thrifty.example"] and "Credit balance is low" in mail.subject and "is 5 USD, below the 10 USD" in mail.body
    _spend(tenant, 50_000_000, "topup")  # back above
    assert low_balances_check() == {"queued": 0, "reset": 1}
    _spend(tenant, -50_000_000, "u3")
    assert low_balances_check()["queued"] == 1
    alerts_send()
    assert len(mailoutbox) == 2


def test_the_low_balance_webhook_is_signed_with_the_tenants_secret(transactional_db, receiver):
    tenant = make_tenant("hooked", credit="5", wallet=None)
    _, secret = alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url=receiver.url)
    assert len(secret) == 64
    _, again = alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url=receiver.url)
    assert again == ""  # made once, shown once
    receiver.received.clear()
    low_balances_check()
    assert alerts_send()["sent"] == 1
    ((headers, body),) = receiver.received
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-tokenhub-signature"] == expected == webhook_signature(body=body, secret=secret)
    payload = json.loads(body)
    assert (payload["type"], payload["balance"], payload["amount_micros"], payload["threshold_micros"]) == ("balance.low", "credit", 5_000_000, 10_000_000)


def test_a_webhook_into_our_own_network_is_refused(transactional_db, settings, receiver):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    tenant = make_tenant("prying", credit="5", wallet=None)
    for url in (receiver.url, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "file:///etc/passwd"):
        with pytest.raises(ValueError):
            alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url=url)
    with pytest.raises(ValueError, match="must be positive"):
        alert_settings_set(tenant_id=tenant.pk, credit_below="-1", wallet_below="", webhook_url="")


def test_a_failing_webhook_is_retried_then_given_up(transactional_db, settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8"]
    tenant = make_tenant("gone", credit="5", wallet=None)
    alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url="http://127.0.0.1:9/closed")
    low_balances_check()
    results = [alerts_send() for _ in range(5)]
    assert [r["retrying"] for r in results[:4]] == [1, 1, 1, 1] and results[4]["failed"] == 1
    alert = Alert.objects.get()
    assert alert.status == "failed" and alert.attempts == 5 and alert.last_error


def test_operators_hear_of_a_channel_disabled_automatically(transactional_db, settings, mailoutbox, receiver):
    from channels.health.status import channel_auto_disable

    settings.OPERATOR_ALERT_EMAILS = ["ops@example.com"]
    settings.OPERATOR_ALERT_WEBHOOK_URL = receiver.url
    settings.OPERATOR_ALERT_WEBHOOK_SECRET = "ops-secret"
    receiver.received.clear()
    channel = make_channel("flaky", "http://127.0.0.1:9/v1")
    assert channel_auto_disable(channel_id=channel.pk, kind="auth", reason="upstream refused the credential")
    assert not channel_auto_disable(channel_id=channel.pk, kind="auth", reason="again")  # once
    assert alerts_send()["sent"] == 1
    (mail,) = mailoutbox
    assert mail.to == ["ops@example.com"] and "flaky" in mail.subject
    ((headers, body),) = receiver.received
    assert headers["x-tokenhub-signature"] == webhook_signature(body=body, secret="ops-secret")
    assert json.loads(body)["type"] == "channel_disabled"


def test_no_operator_alert_is_queued_without_an_operator_channel(transactional_db, settings):
    from channels.health.status import channel_auto_disable

    settings.OPERATOR_ALERT_EMAILS, settings.OPERATOR_ALERT_WEBHOOK_URL = [], ""
    channel = make_channel("quiet", "http://127.0.0.1:9/v1")
    channel_auto_disable(channel_id=channel.pk, kind="auth", reason="x")
    assert not Alert.objects.exists()


def test_the_embedded_runner_sends_alerts_without_a_broker(transactional_db, mailoutbox):
    tenant = make_tenant("embedded", credit="1", wallet=None)
    make_user("embedded-owner", tenant)
    alert_settings_set(tenant_id=tenant.pk, credit_below="10", wallet_below="", webhook_url="")
    runner = Runner(first_delay_s=3600)
    runner.jobs["alerts"].next_at = 0  # only this job is due
    assert runner.run_due() == ["alerts"]
    assert runner.jobs["alerts"].last_error == ""
    assert runner.jobs["alerts"].last_result["sent"] == 1 and len(mailoutbox) == 1


def test_owners_set_thresholds_on_the_top_up_page(payer, receiver):
    portal, tenant, _ = payer
    response = portal.post("/topup/alerts/", {"credit_below": "10", "wallet_below": "50", "webhook_url": receiver.url}, form_page="/topup/")
    assert response.status_code == 200 and 'id="webhook-secret"' in response.text
    page = portal.get("/topup/")
    assert 'value="10"' in page.text and 'value="50"' in page.text and 'id="webhook-secret"' not in page.text
    bad = portal.post("/topup/alerts/", {"credit_below": "ten", "wallet_below": "", "webhook_url": ""}, form_page="/topup/")
    assert bad.status_code == 400 and "is not a number" in bad.text


def test_thresholds_too_large_for_a_balance_are_refused_and_change_nothing(payer):
    from billing.models import AlertSettings

    portal, tenant, _ = payer
    portal.post("/topup/alerts/", {"credit_below": "10", "wallet_below": "", "webhook_url": ""}, form_page="/topup/")
    for field, value in (("credit_below", "9" * 30), ("wallet_below", "1e30"), ("credit_below", "1e1000000"), ("wallet_below", "\u0663")):
        data = {"credit_below": "10", "wallet_below": "", "webhook_url": "", field: value}
        bad = portal.post("/topup/alerts/", data, form_page="/topup/")
        assert bad.status_code == 400, (field, value, bad.status_code)
        assert "threshold" in bad.text, (field, value)
    row = AlertSettings.objects.get(tenant=tenant)
    assert (row.credit_below_micros, row.wallet_below_micros) == (10_000_000, None)
