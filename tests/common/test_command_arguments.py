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

