"""Config as code: `export_config` / `import_config` (docs/config.md), and the importers for a
One API / New API channel export and a LiteLLM config.yaml (samples under samples/)."""

import json
import stat
from io import StringIO
from pathlib import Path

import openai
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import Group, Price
from channels.models import Channel, ChannelModel, Model
from tests.conftest import make_key, make_tenant
from tests.fakes.api_root import ApiRootOnly
from tests.fakes.server import ServerThread
from vault.services import secret_unseal

SAMPLES = Path(__file__).parent / "samples"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def vendor():
    fake = ApiRootOnly(api_key="sk-vendor-secret")
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


def canonical_yaml(vendor_url: str, key_file: str) -> str:
    # exactly what export_config writes: keys in its order, lists sorted, money as text
    return f"""version: 1
groups:
  default:
    ratio: '1'
  vip:
    ratio: '0.8'
    mode: cheap
models:
  gpt-4o:
    context_window: 128000
    max_output: 16384
    aliases:
    - four
  gpt-4o-mini:
    max_output: 16384
  sim-small:
    hidden: true
prices:
  gpt-4o:
    input: '2.5'
    output: '10'
    cached_input: '1.25'
  gpt-4o-mini:
    input: '0.15'
    output: '0.6'
    tiers:
    - above_prompt_tokens: 200000
      input: '0.3'
      output: '1.2'
  sim-small:
    free: true
channels:
  demo-sim:
    type: simulated
    base_url: simulated://demo
    models:
    - sim-small
    priority: 0
    weight: 1
    billing: official
    groups:
    - default
    cost_ratio: '1'
    discount_ratio: '1'
    options:
      chunk_delay_ms: 5
  vendor-env:
    type: openai
    base_url: {vendor_url}/v1
    api_key_env: TOKENHUB_TEST_VENDOR_KEY
    models:
    - gpt-4o
    - gpt-4o-mini=gpt-4o-mini-2024-07-18
    priority: 10
    weight: 3
    billing: official
    groups:
    - default
    - vip
    cost_ratio: '0.7'
    discount_ratio: '1'
  vendor-file:
    type: openai
    brand: deepseek
    base_url: {vendor_url}/v1
    api_key_file: {key_file}
    models:
    - gpt-4o
    priority: 0
    weight: 1
    billing: routed
    groups:
    - vip
    cost_ratio: '1'
    discount_ratio: '0.9'
"""


@pytest.fixture
def config_file(tmp_path, vendor, monkeypatch):
    monkeypatch.setenv("TOKENHUB_TEST_VENDOR_KEY", "sk-vendor-secret")
    (tmp_path / "vendor.key").write_text("sk-vendor-secret\n")
    path = tmp_path / "tokenhub.yaml"
    path.write_text(canonical_yaml(vendor.url, "vendor.key"))
    return path


def run(command: str, *args) -> dict:
    out = StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def exported(*args) -> str:
    out = StringIO()
    call_command("export_config", *args, stdout=out)
    return out.getvalue()


def database_state() -> list:
    """Everything an import may write, with the times rows were last saved."""
    return [
        sorted(Group.objects.values_list("name", "ratio", "mode")),
        sorted(Model.objects.values_list("public_id", "context_window", "max_output", "aliases", "is_hidden")),
        sorted(Price.objects.values_list("model", "input_micros_per_m", "output_micros_per_m", "tiers", "is_free")),
        sorted(Channel.objects.values_list("name", "base_url", "credential", "credential_source", "updated_at")),
        sorted(ChannelModel.objects.values_list("channel__name", "model__public_id", "upstream_name")),
    ]


def test_import_then_export_gives_the_same_yaml(config_file):
    report = run("import_config", str(config_file))

    assert report["format"] == "tokenhub" and report["warnings"] == []
    assert report["created"] + report["unchanged"] == 11 and report["updated"] == 0  # `default` may exist already
    assert exported() == config_file.read_text()
    channel = Channel.objects.get(name="vendor-env")
    assert "sk-vendor-secret" not in channel.credential and secret_unseal(token=channel.credential) == "sk-vendor-secret"
    assert channel.credential_source == "env:TOKENHUB_TEST_VENDOR_KEY"
    assert Price.objects.get(model="gpt-4o").input_micros_per_m == 2_500_000


def test_importing_twice_changes_nothing(config_file):
    run("import_config", str(config_file))
    before = database_state()

    again = run("import_config", str(config_file))

    assert (again["created"], again["updated"], again["changes"]) == (0, 0, [])
    assert again["unchanged"] == 11
    assert database_state() == before


def test_an_imported_channel_serves_requests(config_file, relay):
    run("import_config", str(config_file))
    actor = make_key(make_tenant("acme"))
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=actor.key, max_retries=0)

    answer = client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])

    assert answer.choices[0].message.content


def test_dry_run_shows_the_changes_and_makes_none(config_file):
    plan = run("import_config", str(config_file), "--dry-run")

    assert plan["dry_run"] is True and plan["created"] >= 10
    assert {(c["kind"], c["name"]) for c in plan["changes"]} >= {("channel", "vendor-env"), ("price", "gpt-4o"), ("group", "vip")}
    assert not Channel.objects.exists() and not Model.objects.exists() and not Price.objects.exists()


def test_a_change_is_reported_field_by_field(config_file):
    run("import_config", str(config_file))
    config_file.write_text(config_file.read_text().replace("weight: 3", "weight: 4").replace("input: '2.5'", "input: '3'"))

    report = run("import_config", str(config_file))

    assert {(c["name"], tuple(c["fields"])) for c in report["changes"]} == {("vendor-env", ("weight",)), ("gpt-4o", ("input",))}
    assert Channel.objects.get(name="vendor-env").weight == 4


def test_a_bad_entry_changes_nothing_and_says_where(config_file):
    config_file.write_text(config_file.read_text().replace("billing: routed", "billing: gratis"))

    with pytest.raises(CommandError, match=r"^channels\.vendor-file: billing must be one of"):
        call_command("import_config", str(config_file))
    assert not Group.objects.filter(name="vip").exists() and not Channel.objects.exists() and not Model.objects.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("weight: 3", "wieght: 3"), r"channels\.vendor-env: unknown key 'wieght'"),
        (("api_key_env: TOKENHUB_TEST_VENDOR_KEY", "api_key_env: TOKENHUB_TEST_UNSET_KEY"), "TOKENHUB_TEST_UNSET_KEY is not set"),
        (("api_key_file: vendor.key", "api_key_file: missing.key"), "cannot read 'missing.key'"),
        (("  sim-small:\n    free: true", "  unknown-model:\n    free: true"), r"prices\.unknown-model: unknown model"),
        (("version: 1", "version: 2"), "version 2 is not supported"),
        (("ratio: '0.8'", "ratio: lots"), r"groups\.vip: ratio 'lots' is not a number"),
        (("hidden: true", "hidden: 'no'"), r"models\.sim-small: hidden must be true or false"),
        (("weight: 3", "weight: three"), r"channels\.vendor-env: weight must be an integer"),
        (("groups:\n  default:\n    ratio: '1'\n  vip:\n    ratio: '0.8'\n    mode: cheap", "groups: [default, vip]"), "groups must be a mapping"),
        (("models:\n", "models:\n  - oops\n"), "not valid YAML or JSON at line"),
    ],
)
def test_bad_input_is_one_clear_error(config_file, edit, message):
    config_file.write_text(config_file.read_text().replace(*edit))
    with pytest.raises(CommandError, match=message):
        call_command("import_config", str(config_file))
    assert not Channel.objects.exists() and not Model.objects.exists()


def test_a_new_channel_is_checked_for_its_api_root(config_file, vendor):
    config_file.write_text(config_file.read_text().replace(f"base_url: {vendor.url}/v1\n    api_key_env", f"base_url: {vendor.url}\n    api_key_env"))

    with pytest.raises(CommandError, match=rf"channels\.vendor-env: .*use --base-url {vendor.url}/v1"):
        call_command("import_config", str(config_file))
    assert run("import_config", str(config_file), "--no-check")["created"] >= 10


def test_secrets_are_exported_only_when_asked(config_file, tmp_path):
    run("import_config", str(config_file))
    Channel.objects.filter(name="vendor-file").update(credential_source="")  # as if given inline

    plain = exported()
    secret_path = tmp_path / "with-secrets.yaml"
    call_command("export_config", "--include-secrets", "--output", str(secret_path), stdout=StringIO())

    assert "sk-vendor-secret" not in plain and "api_key:" not in plain
    assert "api_key_env: TOKENHUB_TEST_VENDOR_KEY" in plain
    assert secret_path.read_text().count("api_key: sk-vendor-secret") == 2
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600


def test_export_json_has_the_document_and_counts(config_file):
    run("import_config", str(config_file))

    made = run("export_config")

    assert made["counts"] == {"groups": 2, "models": 3, "prices": 3, "channels": 3}
    assert made["config"]["channels"]["vendor-env"]["api_key_env"] == "TOKENHUB_TEST_VENDOR_KEY"


def test_one_api_channels_are_imported_with_their_mapping_groups_and_keys(settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8", "10.0.0.0/8"]

    report = run("import_config", str(SAMPLES / "one_api_channels.json"), "--no-check")

    assert report["format"] == "one-api"
    assert set(Channel.objects.values_list("name", flat=True)) == {"OpenAI official", "DeepSeek", "Claude", "Azure East US", "Local vLLM"}
    official = Channel.objects.get(name="OpenAI official")
    assert (official.provider_type, official.base_url, official.priority, official.weight) == ("openai", "https://api.openai.com/v1", 10, 1)
    assert official.groups == ["default", "vip"] and Group.objects.filter(name="vip").exists()
    assert dict(official.channel_models.values_list("model__public_id", "upstream_name")) == {
        "gpt-4o": "gpt-4o", "gpt-4o-mini": "gpt-4o-mini", "gpt-3.5-turbo": "gpt-4o-mini",
    }
    assert secret_unseal(token=official.credential) == "sk-oneapi-openai-0001" and "sk-oneapi" not in official.credential
    deepseek = Channel.objects.get(name="DeepSeek")
    assert (deepseek.brand, deepseek.base_url, deepseek.weight) == ("deepseek", "https://api.deepseek.com/v1", 3)
    claude = Channel.objects.get(name="Claude")
    assert (claude.provider_type, claude.base_url, claude.groups) == ("anthropic", "https://api.anthropic.com", ["vip"])
    assert claude.channel_models.get(model__public_id="claude-3-5-sonnet-20241022").upstream_name == "claude-3-5-sonnet-latest"
    azure = Channel.objects.get(name="Azure East US")
    assert (azure.brand, azure.base_url, azure.options) == ("azure", "https://contoso-eastus.openai.azure.com", {"azure": {"api_version": "2024-06-01"}})
    local = Channel.objects.get(name="Local vLLM")
    assert (local.base_url, local.priority) == ("http://10.0.0.5:8000/v1", -1)
    warnings = " | ".join(report["warnings"])
    assert "Wenxin" in warnings and "type 15" in warnings and "old OpenAI key" in warnings and "disabled" in warnings
    assert "sk-oneapi" not in json.dumps(report)
    assert run("import_config", str(SAMPLES / "one_api_channels.json"), "--no-check")["changes"] == []


def test_a_one_api_import_refused_midway_changes_nothing():
    # the local vLLM channel is on a private network the operator has not allowed
    with pytest.raises(CommandError, match="Local vLLM.*TOKENHUB_UPSTREAM_ALLOW_CIDRS"):
        call_command("import_config", str(SAMPLES / "one_api_channels.json"), "--no-check")
    assert not Channel.objects.exists() and not Model.objects.exists() and not Group.objects.filter(name="vip").exists()


def test_new_api_exports_are_told_apart_and_keep_every_key():
    report = run("import_config", str(SAMPLES / "new_api_channels.json"), "--no-check")

    assert report["format"] == "new-api"
    pool = Channel.objects.get(name="deepseek-pool")
    assert (pool.brand, pool.base_url) == ("deepseek", "https://api.deepseek.com/v1")  # 43 is DeepSeek in New API
    # multi-key mode: the newline-separated `key` becomes the channel's keys, one a line (channels.keys)
    assert secret_unseal(token=pool.credential) == "sk-newapi-deepseek-a\nsk-newapi-deepseek-b"
    assert Channel.objects.get(name="gemini").provider_type == "gemini"
    assert "sk-newapi" not in json.dumps(report)
    assert run("import_config", str(SAMPLES / "new_api_channels.json"), "--no-check")["changes"] == []


def test_a_litellm_import_refused_midway_changes_nothing(monkeypatch):
    for name in ("OPENAI_API_KEY", "AZURE_API_KEY_EU", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        monkeypatch.setenv(name, f"key-of-{name}")

    with pytest.raises(CommandError, match="TOKENHUB_UPSTREAM_ALLOW_CIDRS"):  # local-llama is on 10.0.0.7, not allowed here
        call_command("import_config", str(SAMPLES / "litellm_config.yaml"), "--no-check")
    assert not Channel.objects.exists()


def test_litellm_model_list_becomes_channels_by_account(monkeypatch, settings):
    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8", "10.0.0.0/8"]
    for name in ("OPENAI_API_KEY", "AZURE_API_KEY_EU", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        monkeypatch.setenv(name, f"key-of-{name}")

    report = run("import_config", str(SAMPLES / "litellm_config.yaml"), "--no-check")

    assert report["format"] == "litellm"
    by_name = {c.name: c for c in Channel.objects.all()}
    assert set(by_name) == {
        "openai-api.openai.com", "azure-my-endpoint-europe.openai.azure.com", "anthropic-api.anthropic.com",
        "groq-api.groq.com", "vllm-10.0.0.7",
    }
    official = by_name["openai-api.openai.com"]
    assert sorted(official.channel_models.values_list("model__public_id", flat=True)) == ["gpt-4o", "gpt-4o-mini"]
    assert official.credential_source == "env:OPENAI_API_KEY" and secret_unseal(token=official.credential) == "key-of-OPENAI_API_KEY"
    azure = by_name["azure-my-endpoint-europe.openai.azure.com"]
    assert (azure.weight, azure.options, azure.base_url) == (2, {"azure": {"api_version": "2024-06-01"}}, "https://my-endpoint-europe.openai.azure.com")
    assert azure.channel_models.get().upstream_name == "gpt-4o-eu"
    assert by_name["anthropic-api.anthropic.com"].channel_models.get().upstream_name == "claude-3-5-sonnet-20241022"
    assert by_name["vllm-10.0.0.7"].channel_models.get().upstream_name == "meta-llama/Meta-Llama-3-8B-Instruct"
    price = Price.objects.get(model="gpt-4o")
    assert (price.input_micros_per_m, price.output_micros_per_m) == (2_500_000, 10_000_000)
    assert any("bedrock" in w for w in report["warnings"])
    exported_text = exported()
    assert "api_key_env: OPENAI_API_KEY" in exported_text and "key-of-" not in exported_text
    assert run("import_config", str(SAMPLES / "litellm_config.yaml"), "--no-check")["changes"] == []


def test_a_config_cannot_send_tokenhubs_own_secrets_upstream(tmp_path, vendor, settings):
    from channels.configfile import config_import, own_environment_names

    assert {"SECRET_KEY", "DATABASE_URL", "TOKENHUB_VAULT_PASSWORD", "STRIPE_SECRET_KEY"} <= own_environment_names()
    for name in sorted(own_environment_names()):
        document = {"channels": {"x": {"type": "openai", "base_url": vendor.url + "/v1", "models": ["m"], "api_key_env": name}}}
        with pytest.raises(ValueError, match=f"{name} is one of TokenHub's own settings"):
            config_import(document=document, check_timeout_s=None, environ={name: "value"})
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    (settings.VAR_DIR / "secret_key").write_text("django-secret")
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/sbin/nologin\n")
    for path, message in ((settings.VAR_DIR / "secret_key", "var directory"), (tmp_path / "passwd", "more than one line")):
        document = {"channels": {"x": {"type": "openai", "base_url": vendor.url + "/v1", "models": ["m"], "api_key_file": str(path)}}}
        with pytest.raises(ValueError, match=message):
            config_import(document=document, check_timeout_s=None)
    assert not Channel.objects.exists()
