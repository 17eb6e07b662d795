"""Multi-key channels from the operator's side: add_channel, set_channel_credential, the
management API, the admin form, import_config, probes. Keys go in; only counts, positions,
fingerprints and states come out; bad key lists are refused and change nothing."""

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

from channels.keys import key_fingerprint
from tests.conftest import make_channel, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)

KEYS = ("sk-op-secret-one-111", "sk-op-secret-two-222", "sk-op-secret-three-333")


def run_json(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def manage(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url()}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, input=stdin)


def sealed_keys(name: str) -> list[str]:
    from channels.models import Channel
    from vault.services import secret_unseal

    return secret_unseal(token=Channel.objects.get(name=name).credential).split("\n")


def no_key_in(text: str) -> None:
    for key in KEYS:
        assert key not in text


def test_add_channel_takes_the_api_key_flag_several_times():
    args = ["add_channel", "multi", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1", "--models", "gpt-x", "--no-check"]
    for key in KEYS:
        args += ["--api-key", key]
    made = run_json(*args)
    assert made["key_count"] == 3
    assert sealed_keys("multi") == list(KEYS)
    shown = run_json("show_channel", "multi")
    assert shown["has_credential"] is True and shown["key_count"] == 3
    assert shown["keys"] == [{"position": i + 1, "fingerprint": key_fingerprint(k), "state": "ready"} for i, k in enumerate(KEYS)]
    listed = run_json("list_channels")["channels"][0]
    assert listed["key_count"] == 3 and [k["state"] for k in listed["keys"]] == ["ready"] * 3
    no_key_in(json.dumps([made, shown, listed]))
    from observability.models import AuditRecord
    from observability.redact import REDACTED

    record = AuditRecord.objects.get(action="cli.add_channel")
    assert record.after["arguments"]["api_key"] == REDACTED
    no_key_in(json.dumps([r.after for r in AuditRecord.objects.all()], default=str))


def test_add_channel_refuses_a_repeated_key_and_creates_nothing():
    from channels.models import Channel

    args = ["add_channel", "dup", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1", "--models", "gpt-x", "--no-check"]
    with pytest.raises(CommandError) as info:
        call_command(*args, "--api-key", KEYS[0], "--api-key", KEYS[0], stdout=StringIO())
    assert "key 2 of 2 repeats an earlier key" in str(info.value) and KEYS[0] not in str(info.value)
    assert not Channel.objects.filter(name="dup").exists()


def test_set_channel_credential_reads_one_key_a_line_from_stdin_or_a_file(tmp_path):
    from vault.services import vault_forget

    vault_forget()  # a key cached by an earlier test belongs to a database since flushed
    channel = make_channel("sim", "sim://", provider_type="simulated", models=("m1",), api_key="sk-old")
    done = manage("set_channel_credential", "sim", "--json", stdin="\n".join(KEYS) + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": channel.pk, "name": "sim", "has_credential": True}
    no_key_in(done.stdout + done.stderr)
    assert sealed_keys("sim") == list(KEYS)

    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEYS[0]}\r\n\r\n{KEYS[1]}\r\n")
    run_json("set_channel_credential", "sim", "--api-key-file", str(key_file))
    assert sealed_keys("sim") == list(KEYS[:2])

    refused = manage("set_channel_credential", "sim", stdin=f"{KEYS[2]}\nsk-with a space\n")
    assert refused.returncode != 0 and "key 2 of 2 has spaces inside" in refused.stderr
    no_key_in(refused.stderr)
    assert sealed_keys("sim") == list(KEYS[:2])  # nothing changed


def test_replacing_the_credential_forgets_disabled_keys_that_are_gone():
    from channels.health.status import channel_key_auto_disable
    from channels.models import ChannelHealth
    from channels.services import channel_credential_set

    channel = make_channel("pool", "http://127.0.0.1:9/v1", models=("m1",), api_key=list(KEYS))
    assert channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint(KEYS[0]), kind="auth", reason="401")
    assert channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint(KEYS[1]), kind="auth", reason="401")
    assert not channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint(KEYS[1]), kind="auth", reason="401")
    assert not channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint("sk-not-ours"), kind="auth", reason="401")
    channel_credential_set(channel=channel, api_key=[KEYS[1], KEYS[2], "sk-op-new-444"])
    assert set(ChannelHealth.objects.get(channel=channel).disabled_keys) == {key_fingerprint(KEYS[1])}
    assert [k["state"] for k in run_json("show_channel", "pool")["keys"]] == ["disabled", "ready", "ready"]


def test_the_table_holds_the_keys_and_leaves_out_the_disabled_ones():
    from channels.health.status import channel_key_auto_disable
    from channels.table import table_build

    channel = make_channel("pool", "http://127.0.0.1:9/v1", models=("m1",), api_key="\n".join(KEYS))
    channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint(KEYS[0]), kind="quota", reason="empty")
    (route,) = table_build().routes["m1"]
    assert route.api_keys == KEYS and route.is_multikey and route.key_position(1) == "2/3"
    assert route.disabled_keys == {key_fingerprint(KEYS[0])} and route.api_key == KEYS[1]
    assert not any(k in repr(route) for k in KEYS)  # a logged route never shows its keys


def test_the_management_api_takes_several_keys_and_shows_only_fingerprints(relay_server):
    from tests.accounts.api.conftest import operator_token, token_client

    api = token_client(relay_server.url, operator_token("ops")["token"])
    made = api.post("/channels", json={"name": "pool", "provider_type": "simulated", "base_url": "sim://", "api_key": list(KEYS),
                                       "models": [{"model": "m1"}]})
    assert made.status_code == 201, made.text
    assert made.json()["key_count"] == 3 and made.json()["keys"][2]["fingerprint"] == key_fingerprint(KEYS[2])
    channel_id = made.json()["id"]
    patched = api.patch(f"/channels/{channel_id}", json={"api_key": f"{KEYS[0]}\n{KEYS[1]}"})
    assert patched.status_code == 200 and patched.json()["key_count"] == 2
    refused = api.patch(f"/channels/{channel_id}", json={"api_key": [KEYS[0], KEYS[0]]})
    assert refused.status_code == 400 and "repeats an earlier key" in refused.text
    shown = api.get(f"/channels/{channel_id}")
    assert [k["state"] for k in shown.json()["keys"]] == ["ready", "ready"]
    listed = api.get("/channels")
    no_key_in(made.text + patched.text + refused.text + shown.text + listed.text)
    assert sealed_keys("pool") == list(KEYS[:2])


def test_the_admin_credential_field_takes_one_key_a_line_and_never_shows_them():
    from channels.admin import ChannelFormChecked

    data = {"name": "pool", "provider_type": "simulated", "brand": "", "base_url": "sim://", "credential_source": "", "groups": '["default"]',
            "billing": "official", "priority": 0, "weight": 1, "cost_ratio": 1, "discount_ratio": 1, "status": "enabled",
            "options": "{}", "new_api_key": "\n".join(KEYS)}
    form = ChannelFormChecked(data=data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["new_api_key"] == "\n".join(KEYS)
    bad = ChannelFormChecked(data={**data, "new_api_key": f"{KEYS[0]}\n{KEYS[0]}"})
    assert not bad.is_valid() and "repeats an earlier key" in str(bad.errors)
    no_key_in(str(bad["new_api_key"]) + str(form["new_api_key"]))  # shown again after an error: empty


def test_import_config_reads_several_keys_from_a_file_or_the_environment(tmp_path):
    from channels.configfile import config_import

    key_file = tmp_path / "pool.keys"
    key_file.write_text("\n".join(KEYS) + "\n")
    document = {"channels": {"pool": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "api_key_file": str(key_file)},
                             "env": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "api_key_env": "POOL_KEYS"},
                             "inline": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "api_key": list(KEYS[:2])}}}
    report = config_import(document=document, check_timeout_s=None, environ={"POOL_KEYS": f"{KEYS[2]}\n{KEYS[0]}"})
    assert sealed_keys("pool") == list(KEYS) and sealed_keys("env") == [KEYS[2], KEYS[0]] and sealed_keys("inline") == list(KEYS[:2])
    no_key_in(json.dumps(report.as_json(), default=str))
    again = config_import(document=document, check_timeout_s=None, environ={"POOL_KEYS": f"{KEYS[2]}\n{KEYS[0]}"})
    assert again.changes == []  # the same keys read again: nothing to write

    # a .env file or other text by a wrong path is not keys: refused, nothing sent anywhere
    (tmp_path / ".env").write_text("SECRET_KEY=abcdefghijkl\nDEBUG=true\n")
    for bad in (tmp_path / ".env",):
        wrong = {"channels": {"x": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "models": ["m"], "api_key_file": str(bad)}}}
        with pytest.raises(ValueError, match="more than one line and not every line looks like a key"):
            config_import(document=wrong, check_timeout_s=None)


def test_a_probe_of_a_channel_whose_keys_were_all_refused_re_enables_it_with_every_key(upstreams):
    from channels.health.probes import channel_probe, channels_to_probe
    from channels.health.status import channel_key_auto_disable
    from channels.models import Channel, ChannelHealth

    (fake,) = upstreams("pool")
    channel = make_channel("pool", fake.url + "/v1", models=["gpt-4o-mini"], api_key=list(KEYS))
    for key in KEYS:
        channel_key_auto_disable(channel_id=channel.pk, fingerprint=key_fingerprint(key), kind="auth", reason="401")
    assert Channel.objects.get(pk=channel.pk).status == "disabled"
    assert (channel.pk, None) in channels_to_probe()
    result = channel_probe(channel_id=channel.pk)
    assert result.is_ok and result.re_enabled
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEYS[0]}"  # one key, never the whole list
    assert ChannelHealth.objects.get(channel=channel).disabled_keys == {}
    assert Channel.objects.get(pk=channel.pk).status == "enabled"


def test_a_probe_refused_on_one_key_disables_that_key_alone(upstreams):
    from channels.health.board import board
    from channels.health.probes import channel_probe, channels_to_probe
    from channels.models import Channel, ChannelHealth

    (fake,) = upstreams("pool")
    channel = make_channel("pool", fake.url + "/v1", models=["gpt-4o-mini"], api_key=list(KEYS))
    fake.set_mode("ok", key_modes={KEYS[0]: "401"})
    result = channel_probe(channel_id=channel.pk)
    assert not result.is_ok
    assert list(ChannelHealth.objects.get(channel=channel).disabled_keys) == [key_fingerprint(KEYS[0])]
    assert Channel.objects.get(pk=channel.pk).status == "enabled"
    assert board.cooldown(channel.pk) is None and board.key_cooldowns(channel.pk)
    assert all(ref[0] != channel.pk for ref in channels_to_probe())  # a key's record is not a channel to probe
    assert channel_probe(channel_id=channel.pk).is_ok  # the next probe uses a key still enabled
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEYS[1]}"


def test_a_multikey_header_never_reaches_the_upstream_as_one_value(upstreams):
    """A credential of several lines is never sent whole (a header with newlines, or every key
    at once): discovery sends one key."""
    from channels.discovery import channel_models_discover

    (fake,) = upstreams("pool")
    channel = make_channel("pool", fake.url + "/v1", models=["gpt-4o-mini"], api_key=list(KEYS))
    proposal = channel_models_discover(channel=channel)
    assert proposal is not None
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEYS[0]}"


def test_the_admin_channel_list_shows_a_cooling_key_by_fingerprint_only(client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    import channels.admin
    from channels.health.board import board

    channel = make_channel("pool", "http://127.0.0.1:9/v1", models=("m1",), api_key=list(KEYS))
    board.cool(channel.pk, seconds=60, reason="rate limited (429)", key_fp=key_fingerprint(KEYS[1]))
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "a long operator password"))
    channels.admin._records_cache = (0.0, {})
    page = client.get(reverse("admin:channels_channel_changelist")).content.decode()
    assert f"key {key_fingerprint(KEYS[1])} cooling until" in page and "rate limited (429)" in page
    detail = client.get(reverse("admin:channels_channel_change", args=[channel.pk])).content.decode()
    assert "3 keys by fingerprint" in detail and f"2: {key_fingerprint(KEYS[1])} cooling" in detail
    no_key_in(page + detail)
