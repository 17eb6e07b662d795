"""The management commands' contract (ARCHITECTURE.md): flags, `--json` output, one-line
errors on stderr, nothing changed on failure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Tenant
from billing.models import Balance, LedgerEntry, Price
from billing.services import group_set
from channels.models import Channel, ChannelModel, Model
from tests.conftest import subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def run_json(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def manage(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "TOKENHUB_UPSTREAM_ALLOW_CIDRS": "127.0.0.0/8"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_create_tenant_prints_its_id_and_puts_it_in_default():
    made = run_json("create_tenant", "acme")
    tenant = Tenant.objects.get(pk=made["id"])
    assert (tenant.name, tenant.group) == ("acme", "default")
    group_set(name="vip", ratio="0.8")
    assert run_json("create_tenant", "vipco", "--group", "vip")["group"] == "vip"


def test_create_api_key_prints_the_secret_once_and_stores_its_hash():
    run_json("create_tenant", "acme")
    run_json("set_model", "gpt-x")
    made = run_json(
        "create_api_key", "acme", "--name", "ci", "--models", "gpt-x", "--rpm", "60", "--tpm", "1000",
        "--daily-cap", "2.5", "--monthly-cap", "50", "--expires", "2030-01-01", "--mode", "cheap",
    )
    key = ApiKey.objects.get(pk=made["id"])
    assert made["key"].startswith("sk-") and made["key"] not in key.key_hash
    assert (key.allowed_models, key.rpm, key.tpm) == (["gpt-x"], 60, 1000)
    assert (key.daily_cap_micros, key.monthly_cap_micros) == (2_500_000, 50_000_000)
    assert key.expires_at.year == 2030 and key.mode == "cheap"


def test_create_api_key_accepts_the_tenant_id():
    tenant = run_json("create_tenant", "acme")
    assert run_json("create_api_key", str(tenant["id"]))["tenant"] == "acme"


def test_create_api_key_refuses_an_unknown_model_and_makes_no_key():
    run_json("create_tenant", "acme")
    with pytest.raises(CommandError, match="unknown model"):
        call_command("create_api_key", "acme", "--models", "nope")
    assert ApiKey.objects.count() == 0


def test_add_channel_takes_every_documented_flag():
    group_set(name="vip", ratio="0.8")  # a channel serves existing groups only
    made = run_json(
        "add_channel", "up1", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1", "--api-key", "sk-up",
        "--models", "gpt-a,gpt-b=vendor-b", "--priority", "5", "--weight", "3", "--billing", "routed",
        "--groups", "vip,default", "--cost-ratio", "0.7", "--no-check",
    )
    channel = Channel.objects.get(pk=made["id"])
    assert (channel.provider_type, channel.priority, channel.weight, channel.billing) == ("openai", 5, 3, "routed")
    assert channel.groups == ["vip", "default"] and str(channel.cost_ratio) == "0.7000"
    assert "sk-up" not in channel.credential  # sealed by the vault
    assert dict(ChannelModel.objects.values_list("model__public_id", "upstream_name")) == {"gpt-a": "gpt-a", "gpt-b": "vendor-b"}


def test_add_channel_refuses_a_private_base_url_unless_allowed(settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    with pytest.raises(CommandError, match="TOKENHUB_UPSTREAM_ALLOW_CIDRS"):
        call_command("add_channel", "inside", "--type", "openai", "--base-url", "http://127.0.0.1:8080/v1", "--models", "m")
    assert not Channel.objects.exists() and not Model.objects.exists()


def test_set_model_sets_limits_aliases_and_visibility():
    made = run_json("set_model", "gpt-z", "--context-window", "128000", "--max-output", "4096", "--aliases", "z,zz", "--hidden")
    model = Model.objects.get(pk=made["id"])
    assert (model.context_window, model.max_output, model.aliases, model.is_hidden) == (128000, 4096, ["z", "zz"], True)


def test_money_commands_move_balances_through_the_ledger():
    run_json("create_tenant", "acme")
    run_json("set_model", "gpt-x")
    run_json("set_model", "free-x")
    assert run_json("set_price", "gpt-x", "--input", "2.5", "--output", "10", "--cached-input", "1.25")["id"]
    assert Price.objects.get(model="gpt-x").input_micros_per_m == 2_500_000
    assert run_json("set_price", "free-x", "--free")["free"] is True
    assert run_json("set_exchange_rate", "CNY", "7.1")["currency"] == "CNY"
    assert run_json("credit", "acme", "--balance", "credit", "--amount", "2.5")["id"]
    assert run_json("credit", "acme", "--balance", "wallet", "--amount", "10", "--note", "promo")["id"]
    assert run_json("balance", "acme") == {
        "credit": {"currency": "USD", "amount_micros": 2_500_000, "held_micros": 0},
        "wallet": {"currency": "CNY", "amount_micros": 10_000_000, "held_micros": 0},
    }
    assert run_json("audit_ledger") == {"ok": True, "mismatches": []}
    assert LedgerEntry.objects.count() == 2


def test_a_bad_argument_exits_non_zero_with_one_line_on_stderr_and_changes_nothing():
    run_json("create_tenant", "acme")
    for args in (
        ["credit", "acme", "--balance", "credit", "--amount", "lots"],
        ["credit", "acme", "--balance", "savings", "--amount", "1"],
        ["credit", "nobody", "--balance", "credit", "--amount", "1"],
        ["create_tenant", "acme"],
        ["add_channel", "x", "--type", "carrier-pigeon", "--base-url", "http://127.0.0.1:1/v1", "--models", "m"],
        ["set_price", "m", "--input", "1"],
        ["create_api_key", "acme", "--mode", "teleport"],
    ):
        result = manage(*args, "--json")
        assert result.returncode != 0, args
        assert result.stdout == "", args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert not LedgerEntry.objects.exists()
    assert Tenant.objects.count() == 1 and not Channel.objects.exists() and not Price.objects.exists()


def test_audit_ledger_exits_1_on_a_mismatch():
    run_json("create_tenant", "acme")
    run_json("credit", "acme", "--balance", "credit", "--amount", "1")
    Balance.objects.filter(tenant__name="acme", kind="credit").update(amount_micros=7)
    result = manage("audit_ledger", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["ok"] is False
