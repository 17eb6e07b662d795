"""Operator input is checked before anything is saved: an OpenAI-type base URL must answer as
an API root (or the operator says `--no-check`), prices need a model from the catalog, tenants
a group that exists. Each refusal is one line on stderr, a non-zero exit, nothing changed."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Tenant
from billing.models import Group, Price
from billing.selectors import group_exists
from billing.services import group_set
from channels.models import Channel, Model
from tests.conftest import subprocess_database_url
from tests.fakes.api_root import ApiRootOnly
from tests.fakes.server import ServerThread

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def vendor():
    fake = ApiRootOnly(api_key="sk-good")
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


def run_json(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def manage(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "TOKENHUB_UPSTREAM_ALLOW_CIDRS": "127.0.0.0/8"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def add_openai(base_url: str, *extra: str, api_key: str = "sk-good"):
    return ("add_channel", "up", "--type", "openai", "--base-url", base_url, "--api-key", api_key, "--models", "gpt-4o-mini", *extra)


def test_a_base_url_without_v1_is_refused_naming_the_fix(vendor):
    result = manage(*add_openai(vendor.url), "--json")

    assert result.returncode != 0 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"use --base-url {vendor.url}/v1" in line and "--no-check" in line
    assert "sk-good" not in line
    assert not Channel.objects.exists() and not Model.objects.exists()


def test_the_api_root_passes_the_check(vendor):
    made = run_json(*add_openai(vendor.url + "/v1/"))

    assert Channel.objects.get(pk=made["id"]).base_url == vendor.url + "/v1"
    assert "/v1/models" in vendor.paths


def test_no_check_keeps_the_url_as_given_without_a_request(vendor):
    before = len(vendor.paths)
    made = run_json(*add_openai(vendor.url, "--no-check"))

    assert Channel.objects.get(pk=made["id"]).base_url == vendor.url
    assert len(vendor.paths) == before


def test_a_refused_key_is_an_error_that_does_not_show_the_key(vendor):
    with pytest.raises(CommandError) as raised:
        call_command(*add_openai(vendor.url + "/v1", api_key="sk-wrong-secret-123"))

    assert "--api-key" in str(raised.value) and "sk-wrong-secret-123" not in str(raised.value)
    assert not Channel.objects.exists()


def test_an_unreachable_upstream_is_an_error_that_offers_no_check(settings):
    settings.CHANNEL_CHECK_TIMEOUT_S = 1.0
    with pytest.raises(CommandError, match="--no-check"):
        call_command(*add_openai("http://127.0.0.1:9/v1"))
    assert not Channel.objects.exists()


def test_the_check_never_probes_a_refused_address(settings, vendor):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = []
    before = len(vendor.paths)
    with pytest.raises(CommandError, match="TOKENHUB_UPSTREAM_ALLOW_CIDRS"):
        call_command(*add_openai(vendor.url + "/v1"))
    assert len(vendor.paths) == before


@pytest.mark.parametrize(
    ("kind", "given", "fix"),
    [("anthropic", "https://api.anthropic.com/v1", "https://api.anthropic.com"),
     ("gemini", "https://generativelanguage.googleapis.com/v1beta/", "https://generativelanguage.googleapis.com")],
)
def test_anthropic_and_gemini_base_urls_are_the_host_root(kind, given, fix):
    with pytest.raises(CommandError, match=f"use --base-url {fix} "):
        call_command("add_channel", "up", "--type", kind, "--base-url", given, "--models", "m")
    assert not Channel.objects.exists()


def test_set_price_on_an_unknown_model_is_refused():
    run_json("set_model", "gpt-known", "--aliases", "known")

    result = manage("set_price", "gpt-unknown", "--input", "1", "--output", "2", "--json")
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["CommandError: unknown model 'gpt-unknown': add it first with set_model or add_channel"]
    with pytest.raises(CommandError, match="alias of 'gpt-known'"):
        call_command("set_price", "known", "--input", "1", "--output", "2")
    assert not Price.objects.exists()
    assert run_json("set_price", "gpt-known", "--input", "1", "--output", "2")["model"] == "gpt-known"


def test_create_tenant_in_an_unknown_group_is_refused():
    result = manage("create_tenant", "acme", "--group", "gold", "--json")

    assert result.returncode != 0 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "unknown group 'gold'" in line
    assert not Tenant.objects.exists()


def test_default_always_exists_and_a_made_group_is_known():
    Group.objects.filter(name="default").delete()  # even without its row (a migration makes it)
    assert group_exists(name="default")
    assert run_json("create_tenant", "plain")["group"] == "default"
    group_set(name="gold", ratio="0.9")
    assert run_json("create_tenant", "acme", "--group", "gold")["group"] == "gold"
