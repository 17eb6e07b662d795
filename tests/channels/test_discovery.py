"""`manage.py discover_models CHANNEL [--apply] --json` against each upstream protocol."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import make_channel


def discover(*args: str) -> dict:
    out = io.StringIO()
    call_command("discover_models", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def channels(db, protocol_upstreams):
    return {
        "openai": make_channel("oa", protocol_upstreams["openai"].url + "/v1", models=[("gpt-4o", "gpt-4o")], api_key="k"),
        "anthropic": make_channel("an", protocol_upstreams["anthropic"].url, models=[("sonnet", "claude-sonnet-4-5")], provider_type="anthropic", api_key="k"),
        "gemini": make_channel("ge", protocol_upstreams["gemini"].url, models=[("flash", "gemini-2.5-flash")], provider_type="gemini", api_key="k"),
    }


@pytest.mark.parametrize(
    "kind, proposed, existing",
    [
        ("openai", ["gpt-4o-mini"], ["gpt-4o"]),
        ("anthropic", ["claude-haiku-4-5", "claude-opus-4-1"], ["claude-sonnet-4-5"]),
        ("gemini", ["gemini-2.5-pro", "text-embedding-004"], ["gemini-2.5-flash"]),
    ],
)
def test_it_proposes_the_models_a_channel_lacks_and_changes_nothing(channels, kind, proposed, existing):
    from channels.models import ChannelModel

    before = ChannelModel.objects.count()

    result = discover(channels[kind].name)

    assert result["id"] == channels[kind].pk
    assert [p["model"] for p in result["proposed"]] == proposed
    assert result["existing"] == existing
    assert (result["applied"], result["added"]) == (False, [])
    assert ChannelModel.objects.count() == before


def test_apply_adds_the_rows_with_the_upstreams_limits_once(channels):
    from channels.models import ChannelModel, Model

    first = discover("ge", "--apply")
    second = discover("ge", "--apply")

    assert first["added"] == ["gemini-2.5-pro", "text-embedding-004"]
    assert second["added"] == [] and second["proposed"] == []
    row = ChannelModel.objects.get(channel=channels["gemini"], model__public_id="gemini-2.5-pro")
    assert row.upstream_name == "gemini-2.5-pro"
    assert (Model.objects.get(public_id="gemini-2.5-pro").context_window, Model.objects.get(public_id="gemini-2.5-pro").max_output) == (1048576, 65536)


def test_kind_limits_the_proposal(channels):
    assert [p["model"] for p in discover("ge", "--kind", "embeddings")["proposed"]] == ["text-embedding-004"]


def test_the_channel_may_be_named_by_id(channels):
    assert discover(str(channels["openai"].pk))["channel"] == "oa"


def test_an_unknown_channel_is_an_error(db):
    with pytest.raises(CommandError, match="no channel named 'nope'"):
        call_command("discover_models", "nope", "--json")


def test_a_refused_key_is_an_error_and_adds_nothing(channels, protocol_upstreams):
    from channels.models import ChannelModel

    protocol_upstreams["anthropic"].set_mode("ok", api_key="another-key")
    before = ChannelModel.objects.count()

    with pytest.raises(CommandError, match="did not list its models: upstream 401"):
        call_command("discover_models", "an", "--apply", "--json")

    assert ChannelModel.objects.count() == before


def test_a_simulated_channel_cannot_list_models(db):
    make_channel("sim", "http://simulated.invalid", provider_type="simulated")

    with pytest.raises(CommandError, match="cannot list their models"):
        call_command("discover_models", "sim", "--json")
