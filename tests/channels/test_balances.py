"""Upstream balance monitoring against fake vendor endpoints on loopback."""

import json

import pytest
from django.core.management import call_command

from tests.conftest import make_channel


@pytest.fixture
def monitored(vendor, transactional_db):
    make_channel("ds", vendor.url + "/v1", models=["ds-chat"], brand="deepseek", api_key="sk-ds")
    make_channel("or", vendor.url + "/api/v1", models=["or-chat"], brand="openrouter", api_key="sk-or")
    make_channel("relay", vendor.url + "/v1", models=["relay-chat"], brand="oneapi", api_key="sk-relay")
    make_channel("sim", "simulated://x", models=["sim-chat"], provider_type="simulated")
    return vendor


def latest(name):
    from channels.models import ChannelBalanceSnapshot

    snap = ChannelBalanceSnapshot.objects.filter(channel__name=name).order_by("-created_at", "-id").first()
    return (snap.amount_micros, snap.currency, snap.source) if snap else None


def channel(name):
    from channels.models import Channel

    return Channel.objects.get(name=name)


def test_it_reads_each_brands_balance_and_keeps_history(monitored):
    from channels.tasks import balances_check

    monitored.total_usage_cents = 2500
    counts = balances_check()
    assert counts["read"] == 3 and counts["failed"] == 0
    assert latest("ds") == (10_000_000, "CNY", "deepseek")
    assert latest("or") == (15_000_000, "USD", "openrouter")
    assert latest("relay") == (75_000_000, "USD", "openai_billing")
    assert latest("sim") is None
    balances_check()
    from channels.models import ChannelBalanceSnapshot

    assert ChannelBalanceSnapshot.objects.filter(channel__name="ds").count() == 2


def test_it_sends_the_channel_key(monitored):
    from channels.tasks import balances_check

    balances_check()
    assert "/user/balance" in monitored.paths


def test_low_balance_is_flagged_and_zero_disables_then_a_top_up_re_enables(monitored):
    from channels.models import ChannelHealth
    from channels.tasks import balances_check

    monitored.deepseek_balance = "3.00"
    balances_check()
    assert ChannelHealth.objects.get(channel=channel("ds")).is_balance_low
    assert channel("ds").status == "enabled"

    monitored.deepseek_balance = "0.00"
    assert balances_check()["disabled"] == 1
    ds = channel("ds")
    assert ds.status == "disabled" and ds.status_reason == "auto: balance at the upstream is 0 CNY"
    assert ChannelHealth.objects.get(channel=ds).auto_disabled_kind == "balance"

    monitored.deepseek_balance = "50.00"
    assert balances_check()["re_enabled"] == 1
    assert channel("ds").status == "enabled"
    assert not ChannelHealth.objects.get(channel=channel("ds")).is_balance_low


def test_a_channel_an_operator_disabled_is_left_alone(monitored):
    from channels.health.status import channel_operator_set
    from channels.tasks import balances_check

    channel_operator_set(channel=channel("ds"), is_enabled=False, reason="paused")
    monitored.deepseek_balance = "50.00"
    balances_check()
    assert latest("ds") is None and channel("ds").status_reason == "paused"


def test_check_balances_prints_json(monitored, capsys):
    call_command("check_balances", "--json")
    assert json.loads(capsys.readouterr().out)["read"] == 3
