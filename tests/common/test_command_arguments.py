"""Arguments a column cannot hold, or that would silently mean something else, are refused by
the management commands: non-zero exit, one line on stderr, nothing changed (ARCHITECTURE.md,
Contracts). Each was a traceback, or a value stored that later commands could not read back."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import make_channel, make_price, make_tenant

ROOT = Path(__file__).resolve().parents[2]
OURS = ("accounts", "billing", "channels", "observability", "routing", "research", "vault")
pytestmark = pytest.mark.django_db(transaction=True)

SIM = ["--type", "simulated", "--base-url", "sim://", "--models", "m-new", "--no-check"]


@pytest.fixture(autouse=True)
def demo():
    make_tenant("demo")
    make_channel("sim-1", "sim://", provider_type="simulated", models=("gpt-4o-mini",))
    make_price("gpt-4o-mini")
    call_command("set_exchange_rate", "CNY", "7.2", stdout=StringIO())


def database() -> dict:
    """Every row of every model of ours: what a refused command must leave as it was."""
    return {
        model._meta.label: sorted(map(repr, model.objects.values_list()))
        for model in apps.get_models()
        if model._meta.app_label in OURS
    }


def refused(capsys, *args) -> str:
    """Runs a command that must be refused; returns its one line."""
    before = database()
    capsys.readouterr()
    with pytest.raises((CommandError, SystemExit)) as info:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    if isinstance(info.value, SystemExit):  # argparse's refusal: its line went to stderr
        assert info.value.code != 0
        message = capsys.readouterr().err
    else:
        message = str(info.value)
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    assert database() == before, args
    return lines[0]


AMOUNTS_TOO_LARGE = [
    ("create_api_key", "demo", "--daily-cap", "1e30"),
    ("create_api_key", "demo", "--monthly-cap", "99999999999999999"),
    ("credit", "demo", "--balance", "credit", "--amount", "1e30"),
    ("credit", "demo", "--balance", "credit", "--amount", "99999999999999"),
    ("credit", "demo", "--balance", "wallet", "--amount=-1e30"),
    ("set_price", "gpt-4o-mini", "--input", "1e30", "--output", "1"),
    ("set_price", "gpt-4o-mini", "--input", "1", "--output", "1", "--tiers", '[{"above_prompt_tokens": 1000, "input": 1e30}]'),
    ("create_redemption_codes", "--balance", "credit", "--amount", "1e30", "--count", "1"),
]


@pytest.mark.parametrize("args", AMOUNTS_TOO_LARGE, ids=" ".join)
def test_it_refuses_an_amount_above_a_billion_units(capsys, args):
    assert "must be between -1000000000 and 1000000000" in refused(capsys, *args)


def test_the_largest_amount_is_still_taken():
    call_command("credit", "demo", "--balance", "credit", "--amount", "1000000000", stdout=StringIO())


@pytest.mark.parametrize(
    "args",
    [
        ("add_channel", "c", *SIM, "--cost-ratio", "10000"),
        ("add_channel", "c", *SIM, "--cost-ratio", "1e30"),
        ("add_channel", "c", *SIM, "--cost-ratio", "0.00001"),
        ("add_channel", "c", *SIM, "--discount-ratio", "10000"),
        ("add_channel", "c", *SIM, "--discount-ratio", "0.00001"),
        ("update_channel", "sim-1", "--cost-ratio", "10000"),
        ("update_channel", "sim-1", "--discount-ratio", "0.00001"),
    ],
    ids=" ".join,
)
def test_it_refuses_a_ratio_its_column_cannot_hold(capsys, args):
    line = refused(capsys, *args)
    assert "ratio" in line and ("9999.9999" in line or "4 decimal places" in line), line
    call_command("list_channels", stdout=StringIO())  # still readable


def test_the_largest_and_finest_ratios_are_still_taken():
    call_command("add_channel", "c", *SIM, "--cost-ratio", "9999.9999", "--discount-ratio", "0.0001", stdout=StringIO())
    call_command("list_channels", stdout=StringIO())


@pytest.mark.parametrize(
    "args", [("CNY", "1e30"), ("CNY", "0.0000000001"), ("CNY", "1000000000000"), ("USD", "2")], ids=" ".join
)
def test_set_exchange_rate_refuses_what_the_rate_cannot_be(capsys, args):
    refused(capsys, "set_exchange_rate", *args)
    call_command("set_exchange_rate", "CNY", "7.3", stdout=StringIO())  # later rates still work


def test_set_exchange_rate_takes_usd_at_one():
    call_command("set_exchange_rate", "USD", "1", stdout=StringIO())


def test_credit_refuses_to_take_a_balance_past_what_it_holds(capsys):
    from billing.models import Balance, LedgerEntry

    balance = Balance.objects.get(tenant__name="demo", kind="credit")
    # a balance at the edge, with the ledger to match (the audit stays clean)
    LedgerEntry.objects.filter(balance=balance).update(amount_micros=2**63 - 10, balance_after_micros=2**63 - 10)
    Balance.objects.filter(pk=balance.pk).update(amount_micros=2**63 - 10)
    assert refused(capsys, "credit", "demo", "--balance", "credit", "--amount", "1") == "Credit cannot hold more than 9223372036854.775807 USD"
