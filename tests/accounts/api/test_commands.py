"""The operator CLI beside the API: each new command with --json, and its bad arguments
(non-zero exit, one line on stderr, nothing changed). Commands call the same services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, OperatorToken, Tenant
from billing.models import Group
from channels.models import Channel
from tests.conftest import make_channel, make_key, make_tenant, subprocess_database_url

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db(transaction=True)


def run_json(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def refused(*args) -> str:
    """A refusal: CommandError (one line), or argparse's exit (its one line goes to stderr)."""
    with pytest.raises((CommandError, SystemExit)) as info:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    if isinstance(info.value, SystemExit):
        assert info.value.code != 0
        return ""
    message = str(info.value)
    assert message and "\n" not in message
    return message


def manage(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url()}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          input=stdin)


def _sim_channel(name="sim-1"):
    return make_channel(name, "sim://", provider_type="simulated", models=("m1", "m2"))


def test_operator_tokens_are_made_shown_once_and_revoked():
    made = run_json("create_operator_token", "grafana", "--read-only")
    token = OperatorToken.objects.get(pk=made["id"])
    assert made["token"].startswith("tho-") and made["token"] not in (token.token_hash, token.prefix)
    assert token.is_read_only and made["read_only"] is True
    assert run_json("revoke_operator_token", "grafana")["id"] == token.pk
    assert OperatorToken.objects.get(pk=token.pk).revoked_at is not None
    assert "no operator token" in refused("revoke_operator_token", "nobody")
    assert "must not be empty" in refused("create_operator_token", "  ")
    assert OperatorToken.objects.count() == 1


def test_list_and_revoke_keys():
    actor = make_key(make_tenant("acme"), name="ci")
    listed = run_json("list_keys", "acme")
    assert [k["id"] for k in listed["keys"]] == [actor.key_id] and actor.key not in json.dumps(listed)
    assert run_json("revoke_key", str(actor.key_id))["status"] == "revoked"
    assert run_json("list_keys", "acme", "--status", "active")["keys"] == []
    refused("revoke_key", "999999")
    refused("list_keys", "nobody")
    refused("revoke_key", "not-a-number")


def test_suspend_and_reactivate_tenants():
    make_tenant("acme")
    assert run_json("suspend_tenant", "acme")["status"] == "suspended"
    assert Tenant.objects.get(name="acme").status == "suspended"
    assert run_json("reactivate_tenant", "acme")["status"] == "active"
    refused("suspend_tenant", "nobody")


def test_set_group_ratio():
    assert run_json("set_group", "vip", "--ratio", "0.8")["ratio"] == "0.8000"
    assert run_json("set_group", "vip", "--ratio", "0.9", "--mode", "thompson")["mode"] == "thompson"
    for bad in (["vip", "--ratio", "-1"], ["vip", "--ratio", "abc"], ["vip", "--ratio", "1", "--mode", "bogus"], ["bad name", "--ratio", "1"]):
        refused("set_group", *bad)
    group = Group.objects.get(name="vip")
    assert (str(group.ratio), group.mode) == ("0.9000", "thompson") and Group.objects.count() == 1


def test_list_show_update_enable_disable_channels():
    channel = _sim_channel()
    listed = run_json("list_channels")
    assert [c["name"] for c in listed["channels"]] == ["sim-1"] and "credential" not in listed["channels"][0]
    shown = run_json("show_channel", str(channel.pk))
    assert shown["models"][0]["model"] == "m1" and shown["has_credential"] is False
    run_json("set_group", "vip", "--ratio", "1")  # a channel serves existing groups only
    updated = run_json("update_channel", "sim-1", "--priority", "7", "--weight", "3", "--groups", "default,vip", "--models", "m1,m3=up-3")
    assert (updated["priority"], updated["weight"], updated["groups"]) == (7, 3, ["default", "vip"])
    assert [(m["model"], m["upstream_name"]) for m in updated["models"]] == [("m1", "m1"), ("m3", "up-3")]
    assert run_json("disable_channel", "sim-1", "--reason", "maintenance")["status_reason"] == "maintenance"
    assert run_json("list_channels", "--status", "disabled")["channels"][0]["status"] == "disabled"
    assert run_json("enable_channel", "sim-1")["status"] == "enabled"
    for bad in (["sim-1", "--weight", "0"], ["sim-1", "--cost-ratio", "-2"], ["sim-1", "--groups", "a b"], ["nope", "--priority", "1"],
                ["sim-1", "--billing", "free"]):
        refused("update_channel", *bad)
    assert Channel.objects.get(pk=channel.pk).weight == 3
    refused("show_channel", "nope")
    refused("enable_channel", "nope")


def test_delete_channel_refuses_one_with_history():
    from django.utils import timezone

    from observability.services import request_log_submit, request_logs_flush

    used, unused = _sim_channel("used"), _sim_channel("unused")
    request_log_submit(entry={"request_id": "r1", "tenant_id": None, "key_id": None, "model": "m1", "status": 200, "channel_id": used.pk,
                              "endpoint": "chat.completions", "latency_ms": 1, "overhead_ms": 0.1, "attempts": [], "prompt_tokens": 1,
                              "completion_tokens": 1, "cost_micros": 0, "currency": "USD", "created_at": timezone.now()})
    request_logs_flush()
    assert "request history" in refused("delete_channel", "used")
    assert Channel.objects.get(pk=used.pk).status == "enabled"
    assert run_json("delete_channel", "used", "--disable-instead") == {"id": used.pk, "deleted": False, "disabled": True}
    assert Channel.objects.get(pk=used.pk).status == "disabled"
    assert run_json("delete_channel", "unused")["deleted"] is True
    assert not Channel.objects.filter(pk=unused.pk).exists()


def test_set_channel_credential_from_stdin_or_a_file_never_argv(tmp_path):
    from vault.services import secret_unseal, vault_forget

    vault_forget()  # a key cached by an earlier test belongs to a database since flushed
    channel = _sim_channel()
    done = manage("set_channel_credential", "sim-1", "--json", stdin="sk-from-stdin\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": channel.pk, "name": "sim-1", "has_credential": True}
    assert "sk-from-stdin" not in done.stdout + done.stderr
    sealed = Channel.objects.get(pk=channel.pk).credential
    assert "sk-from-stdin" not in sealed and secret_unseal(token=sealed) == "sk-from-stdin"
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    run_json("set_channel_credential", "sim-1", "--api-key-file", str(key_file))
    assert secret_unseal(token=Channel.objects.get(pk=channel.pk).credential) == "sk-from-file"
    refused("set_channel_credential", "sim-1", "--api-key-file", str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    refused("set_channel_credential", "sim-1", "--api-key-file", str(empty))
    # there is no way to pass the secret itself as an argument
    refused("set_channel_credential", "sim-1", "--api-key", "sk-on-argv")
    assert secret_unseal(token=Channel.objects.get(pk=channel.pk).credential) == "sk-from-file"


def test_bad_arguments_exit_non_zero_with_one_line_and_change_nothing():
    make_tenant("acme")
    _sim_channel()
    before = (Tenant.objects.get(name="acme").status, Channel.objects.get(name="sim-1").weight, OperatorToken.objects.count(),
              ApiKey.objects.count())
    for args in (["update_channel", "sim-1", "--weight", "0"], ["create_operator_token"], ["set_channel_credential", "sim-1"]):
        result = manage(*args, stdin="")
        assert result.returncode != 0, args
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert result.stdout == "", args
    assert before == (Tenant.objects.get(name="acme").status, Channel.objects.get(name="sim-1").weight, OperatorToken.objects.count(),
                      ApiKey.objects.count())
