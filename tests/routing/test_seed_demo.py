"""`seed_demo` keeps the demo key across runs (a chat front-end set up with it keeps working
after the next `make run`), rotates it only when asked, and keeps no other secret."""

import json
import os
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import openai
import pytest
from django.core.management import call_command

from accounts.models import ApiKey
from tests.conftest import subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def seed(*args) -> dict:
    out = StringIO()
    call_command("seed_demo", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_keeps_its_key_across_runs_and_the_key_works(relay_server):
    first = seed()
    second = seed()

    assert second["key"] == first["key"] and second["key_id"] == first["key_id"]
    assert (first["is_new_key"], second["is_new_key"]) == (True, False)
    assert ApiKey.objects.filter(tenant__name="demo", status="active").count() == 1
    client = openai.OpenAI(base_url=relay_server.url + "/v1", api_key=second["key"], max_retries=0)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hello"}])
        if c.choices
    )
    assert text
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "a"])
    assert vectors.data[0].embedding == vectors.data[2].embedding != vectors.data[1].embedding
    assert len(vectors.data[0].embedding) == 256 and vectors.usage.prompt_tokens == 3


def test_rotate_key_revokes_the_old_key_and_prints_a_new_one(relay_server):
    old = seed()
    new = seed("--rotate-key")

    assert new["key"] != old["key"] and new["is_new_key"] is True
    assert ApiKey.objects.get(pk=old["key_id"]).status == "revoked"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=relay_server.url + "/v1", api_key=old["key"], max_retries=0).models.list()
    assert openai.OpenAI(base_url=relay_server.url + "/v1", api_key=new["key"], max_retries=0).models.list().data
    assert seed()["key"] == new["key"]  # and the new one is kept from then on


def test_a_key_file_this_database_does_not_know_gets_a_new_key(var_dir):
    first = seed()
    (var_dir / "demo_key").write_text("sk-from-another-database\n")

    again = seed()

    assert again["is_new_key"] is True and again["key"] != first["key"]
    assert ApiKey.objects.get(pk=first["key_id"]).status == "revoked"  # its secret is lost: no orphan key
    assert (var_dir / "demo_key").read_text().strip() == again["key"]


def test_the_key_file_is_owner_only_and_holds_only_the_demo_key(tmp_path):
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "TOKENHUB_VAR_DIR": str(tmp_path)}

    def manage(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    first = manage("seed_demo")
    other = json.loads(manage("create_api_key", "demo", "--name", "ci", "--json").stdout)
    second = manage("seed_demo", "--json")

    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    key_file = tmp_path / "demo_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    assert secret in first.stdout and str(key_file) in first.stdout  # the output says where it is kept
    assert json.loads(second.stdout)["key"] == secret
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and other["key"] in p.read_text(errors="replace")]
