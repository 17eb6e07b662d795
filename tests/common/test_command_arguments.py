"""Arguments a column cannot hold, or that would silently mean something else, are refused by
the management commands: non-zero exit, one line on stderr, nothing changed (ARCHITECTURE.md,
Contracts). Each was a traceback, or a value stored that later commands could not read back."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import make_channel, make_price, make_tenant, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
OURS = ("accounts", "billing", "channels", "observability", "routing", "research", "vault")
pytestmark = pytest.mark.django_db(transaction=True)

HUGE = "99999999999999999999999"
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


INTEGERS_OUT_OF_RANGE = [
    ("create_api_key", "demo", "--rpm", HUGE),
    ("create_api_key", "demo", "--tpm", HUGE),
    ("set_model", "x", "--context-window", HUGE),
    ("set_model", "x", "--max-output", HUGE),
    ("add_channel", "c", *SIM, "--priority", HUGE),
    ("add_channel", "c", *SIM, f"--priority=-{HUGE}"),
    ("add_channel", "c", *SIM, "--weight", HUGE),
    ("update_channel", "sim-1", "--priority", HUGE),
    ("update_channel", "sim-1", "--weight", HUGE),
    ("create_redemption_codes", "--balance", "credit", "--amount", "1", "--count", HUGE),
]


@pytest.mark.parametrize("args", INTEGERS_OUT_OF_RANGE, ids=" ".join)
def test_it_refuses_a_whole_number_its_column_cannot_hold(capsys, args):
    line = refused(capsys, *args)
    assert "2147483647" in line or "between 1 and" in line, line


@pytest.mark.parametrize("flag", ["--rpm", "--tpm"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_it_refuses_a_rate_limit_below_one_which_would_mean_unlimited(capsys, flag, value):
    assert refused(capsys, "create_api_key", "demo", f"{flag}={value}") == f"error: argument {flag}: must be from 1 to 2147483647"


@pytest.mark.parametrize("value", ["inf", "1e400", "1e12", "NaN", "-1", "soon"])
def test_reconcile_holds_takes_only_finite_seconds_up_to_ten_years(capsys, value):
    line = refused(capsys, "reconcile_holds", f"--older-than={value}")
    assert line.startswith("error: argument --older-than: ") and "seconds" in line, line


def test_reconcile_holds_takes_ten_years():
    call_command("reconcile_holds", "--older-than", str(10 * 365 * 86400), stdout=StringIO())


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


@pytest.mark.parametrize(
    "args",
    [
        ("--input", "", "--output", "1"),
        ("--input", "1", "--output", " "),
        ("--input", "1", "--output", "1", "--cached-input", ""),
        ("--input", "1", "--output", "1", "--free"),
        ("--per-image", "0.04", "--free"),
    ],
    ids=" ".join,
)
def test_set_price_refuses_an_empty_price_or_prices_with_free(capsys, args):
    refused(capsys, "set_price", "gpt-4o-mini", *args)


def test_set_price_free_with_prices_of_zero_is_free():
    """The contract's synopsis names --input and --output beside [--free]: zeros with it agree."""
    import json

    out = StringIO()
    call_command("set_price", "gpt-4o-mini", "--input", "0", "--output", "0.0", "--free", "--json", stdout=out)
    assert json.loads(out.getvalue())["free"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("create_api_key", "demo", "--expires", ""),
        ("create_api_key", "demo", "--models", ""),
        ("create_api_key", "demo", "--models", " , "),
        ("create_redemption_codes", "--balance", "credit", "--amount", "1", "--count", "1", "--expires", ""),
    ],
    ids=" ".join,
)
def test_it_refuses_an_empty_value_that_would_mean_never_or_all(capsys, args):
    assert refused(capsys, *args).startswith("error: argument --")


def test_credit_refuses_to_take_a_balance_past_what_it_holds(capsys):
    from billing.models import Balance

    # a balance at the edge (its ledger, append-only on PostgreSQL, is left as it was: the
    # refusal comes before anything is written, which `refused` checks)
    Balance.objects.filter(tenant__name="demo", kind="credit").update(amount_micros=2**63 - 10)
    assert refused(capsys, "credit", "demo", "--balance", "credit", "--amount", "1") == "Credit cannot hold more than 9223372036854.775807 USD"


def test_refusals_reach_the_shell_as_one_line_and_exit_non_zero():
    env = {**os.environ, "DATABASE_URL": subprocess_database_url()}
    for args in (
        ["credit", "demo", "--balance", "credit", "--amount", "1e30"],
        ["create_api_key", "demo", "--rpm", HUGE],
        ["reconcile_holds", "--older-than", "inf"],
        ["add_channel", "c", *SIM, "--cost-ratio", "10000"],
        ["set_exchange_rate", "CNY", "1e30"],
    ):
        result = subprocess.run([sys.executable, "manage.py", *args, "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, args
        assert result.stdout == "", args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


@pytest.mark.parametrize("ratio", ["1e30", "1000000", "0.00001", "-1"])
def test_set_group_refuses_a_ratio_its_column_cannot_hold(capsys, ratio):
    assert refused(capsys, "set_group", "default", f"--ratio={ratio}").startswith("group ratio ")
