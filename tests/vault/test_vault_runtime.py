"""The vault at run time: lock, unlock and rotate (commands, a second real process, the admin);
a locked vault costs no key derivation per rebuild; a damaged token skips only its channel;
a credential never appears in a repr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from providers.base import Target
from channels.models import Channel
from channels.table import table_build
from tests.conftest import make_channel, subprocess_database_url
from vault import services as vault

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "the first vault password"
NEW_PASSWORD = "the second vault password"


@pytest.fixture
def sealed(transactional_db, settings):
    settings.TOKENHUB_VAULT_PASSWORD = PASSWORD
    settings.VAULT_STATE_CHECK_S = 0.0  # read the state at each use: no waiting in tests
    vault.vault_forget()
    channels = [make_channel(f"up{i}", "http://127.0.0.1:9/v1", models=["gpt-test"], api_key=f"sk-upstream-{i}") for i in range(3)]
    yield channels
    vault.vault_forget()


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vault-password"
    path.write_text(text)
    return str(path)


def _reasons() -> dict[str, str]:
    return {route.channel_name: route.unusable_reason for route in table_build().routes["gpt-test"]}


def _keys() -> dict[str, str | None]:
    return {route.channel_name: route.api_key for route in table_build().routes["gpt-test"]}


def test_target_and_route_reprs_hide_the_upstream_key(sealed):
    target = Target(base_url="https://api.example.com/v1", upstream_model="m", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(target)
    assert all("sk-upstream" not in repr(route) for route in table_build().routes["gpt-test"])


def test_a_damaged_token_skips_only_its_channel_with_a_reason(sealed):
    Channel.objects.filter(name="up1").update(credential="v1.not-really-a-token")
    Channel.objects.filter(name="up2").update(credential="garbage")
    reasons = _reasons()
    assert reasons["up0"] == ""
    assert "damaged" in reasons["up1"] and "not a vault token" in reasons["up2"]
    assert _keys()["up0"] == "sk-upstream-0"


def test_a_wrong_password_costs_one_derivation_not_one_per_channel_per_rebuild(sealed, settings):
    vault.vault_forget()
    settings.TOKENHUB_VAULT_PASSWORD = "not the password"
    before = vault.vault_status()["key_derivations"]
    for _ in range(5):
        assert all("vault locked" in reason for reason in _reasons().values())
    assert vault.vault_status()["key_derivations"] - before == 1


def test_lock_and_unlock_through_the_commands(sealed, tmp_path):
    call_command("vault_lock")
    before = vault.vault_status()["key_derivations"]
    for _ in range(3):
        assert all("locked by an operator" in reason for reason in _reasons().values())
    assert vault.vault_status()["key_derivations"] == before  # locked costs nothing

    generation = vault.vault_status()["generation"]
    with pytest.raises(CommandError, match="does not open the vault; nothing changed"):
        call_command("vault_unlock", password_file=_file(tmp_path, "a wrong password\n"))
    assert vault.vault_status() | {"key_derivations": 0} == {
        "exists": True, "is_locked": True, "generation": generation, "is_key_derived_from_secret_key": False, "key_derivations": 0}

    call_command("vault_unlock", password_file=_file(tmp_path, PASSWORD + "\n"))
    assert _keys() == {"up0": "sk-upstream-0", "up1": "sk-upstream-1", "up2": "sk-upstream-2"}


def test_a_rotation_in_another_process_is_followed_here_without_a_restart(sealed, settings):
    before_tokens = dict(Channel.objects.values_list("name", "credential"))
    assert _keys()["up0"] == "sk-upstream-0"  # this process holds the first key
    derivations = vault.vault_status()["key_derivations"]
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "TOKENHUB_VAULT_PASSWORD": PASSWORD}
    env.pop("REDIS_URL", None) if not settings.REDIS_URL else env.update(REDIS_URL=settings.REDIS_URL)
    done = subprocess.run(
        [sys.executable, "manage.py", "vault_rotate", "--json"],
        input=f"{PASSWORD}\n{NEW_PASSWORD}\n", cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"rewrapped": 3' in done.stdout
    assert PASSWORD not in done.stdout + done.stderr and NEW_PASSWORD not in done.stdout + done.stderr
    after_tokens = dict(Channel.objects.values_list("name", "credential"))
    assert all(after_tokens[name] != before_tokens[name] for name in before_tokens)

    assert _keys() == {"up0": "sk-upstream-0", "up1": "sk-upstream-1", "up2": "sk-upstream-2"}
    assert vault.vault_status()["key_derivations"] == derivations  # followed through the rotation token

    vault.vault_forget()  # a restart: the old password no longer opens it, the new one does
    assert all("vault locked" in reason for reason in _reasons().values())
    vault.vault_forget()
    settings.TOKENHUB_VAULT_PASSWORD = NEW_PASSWORD
    assert _keys()["up2"] == "sk-upstream-2"


def test_a_rotation_with_the_wrong_password_changes_nothing(sealed, tmp_path):
    before_tokens = dict(Channel.objects.values_list("name", "credential"))
    with pytest.raises(CommandError, match="nothing changed"):
        call_command("vault_rotate", password_file=_file(tmp_path, f"wrong password\n{NEW_PASSWORD}\n"))
    assert dict(Channel.objects.values_list("name", "credential")) == before_tokens


def test_the_admin_locks_unlocks_and_rotates(sealed, admin_client):
    from vault.models import VaultState

    pk = VaultState.objects.get().pk
    url = "/admin/vault/vaultstate/"
    admin_client.post(url, {"action": "lock", "_selected_action": [pk], "index": 0})
    assert VaultState.objects.get().is_locked
    page = admin_client.post(url, {"action": "unlock", "_selected_action": [pk], "index": 0})
    assert b'type="password"' in page.content
    admin_client.post(url, {"action": "unlock", "_selected_action": [pk], "index": 0, "apply": "1", "password": PASSWORD})
    assert not VaultState.objects.get().is_locked
    response = admin_client.post(
        url, {"action": "rotate", "_selected_action": [pk], "index": 0, "apply": "1", "password": PASSWORD, "new_password": NEW_PASSWORD}, follow=True)
    assert b"Re-sealed 3 credential(s)" in response.content
    assert PASSWORD.encode() not in response.content and NEW_PASSWORD.encode() not in response.content
    assert _keys()["up1"] == "sk-upstream-1"
