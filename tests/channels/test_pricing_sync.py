"""Pricing sync from a per-model price document (a file or a URL): proposals, markup,
history, and never a silent zero."""

import json

import pytest
from django.core.management import call_command

from tests.conftest import make_channel, make_price

DOCUMENT = {
    "sample_spec": {"input_cost_per_token": 0, "output_cost_per_token": 0},
    "gpt-test": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
                 "max_input_tokens": 128000, "max_output_tokens": 16384, "mode": "chat"},
    "deepseek/deepseek-chat": {"input_cost_per_token": 2.7e-07, "output_cost_per_token": 1.1e-06, "max_input_tokens": 64000},
    "zeroed": {"input_cost_per_token": 1e-06, "output_cost_per_token": 0},
}


@pytest.fixture
def catalog(transactional_db):
    from channels.services import model_ensure

    make_price("gpt-test", "1", "2")
    make_price("zeroed", "1", "4")
    make_price("free-one", is_free=True)
    make_channel("ds", "http://127.0.0.1:9/v1", models=[("chat-cheap", "deepseek-chat")], brand="deepseek")
    model_ensure(public_id="not-listed")
    model_ensure(public_id="gpt-test")


def price(model):
    from billing.models import Price

    p = Price.objects.get(model=model)
    return p.input_micros_per_m, p.output_micros_per_m, p.cached_input_micros_per_m


def sync(**kwargs):
    from channels.tasks import prices_sync_from_source

    return prices_sync_from_source(**kwargs)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(DOCUMENT))
    return str(path)


def test_it_proposes_with_markup_and_changes_nothing_yet(catalog, source):
    from billing.models import PriceChange

    report = sync(source=source, markup="1.2")
    assert sorted(r["model"] for r in report["proposed"]) == ["chat-cheap", "gpt-test"]
    assert price("gpt-test") == (1_000_000, 2_000_000, None)  # unchanged until accepted
    change = PriceChange.objects.get(model="gpt-test")
    assert (change.new_input_micros_per_m, change.new_output_micros_per_m, change.new_cached_input_micros_per_m) == (3_000_000, 12_000_000, 1_500_000)
    assert (change.old_input_micros_per_m, change.status) == (1_000_000, "proposed")
    # the upstream name a channel uses finds the entry, brand-prefixed as the document spells it
    assert PriceChange.objects.get(model="chat-cheap").source_key == "deepseek/deepseek-chat"
    assert report["missing"] == ["not-listed"]
    assert report["skipped"] == [{"model": "free-one", "note": "marked free"}]


def test_accepting_applies_the_proposals(catalog, source):
    from billing.models import PriceChange

    sync(source=source)
    call_command("sync_prices", "--accept-proposed", "--json")
    assert price("gpt-test") == (2_500_000, 10_000_000, 1_250_000)
    assert price("chat-cheap") == (270_000, 1_100_000, None)
    assert set(PriceChange.objects.values_list("status", flat=True)) == {"applied", "refused"}


def test_it_never_zeroes_a_price_silently(catalog, source):
    from billing.models import PriceChange

    report = sync(source=source, apply=True)
    assert price("zeroed") == (1_000_000, 4_000_000, None)
    refused = PriceChange.objects.get(model="zeroed")
    assert refused.status == "refused" and "no output price" in refused.note
    assert [r["model"] for r in report["refused"]] == ["zeroed"]


def test_apply_changes_prices_and_keeps_history(catalog, source):
    from billing.models import PriceChange

    sync(source=source)  # a proposal first: applying supersedes it
    sync(source=source, apply=True, markup="2")
    assert price("gpt-test") == (5_000_000, 20_000_000, 2_500_000)
    history = list(PriceChange.objects.filter(model="gpt-test").order_by("id").values_list("status", "new_input_micros_per_m"))
    assert history == [("superseded", 2_500_000), ("applied", 5_000_000)]
    again = sync(source=source, apply=True, markup="2")
    assert "gpt-test" in again["unchanged"] and PriceChange.objects.filter(model="gpt-test").count() == 2


def test_it_fills_context_windows_the_catalog_lacks(catalog, source):
    from channels.models import Model

    Model.objects.filter(public_id="gpt-test").update(max_output=4096)
    report = sync(source=source)
    gpt = Model.objects.get(public_id="gpt-test")
    assert (gpt.context_window, gpt.max_output) == (128000, 4096)  # the operator's value stays
    assert Model.objects.get(public_id="chat-cheap").context_window == 64000
    assert report["context_filled"] == 2


def test_the_command_reads_a_url_and_prints_json(catalog, vendor, capsys):
    vendor.prices = DOCUMENT
    call_command("sync_prices", vendor.url + "/prices.json", "--markup", "1.1", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == "propose" and result["markup"] == "1.1"
    assert {r["model"] for r in result["proposed"]} == {"gpt-test", "chat-cheap"}


def test_the_command_refuses_a_bad_source(catalog, tmp_path):
    from django.core.management.base import CommandError

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CommandError, match="must be a JSON object keyed by model name"):
        call_command("sync_prices", str(bad))
    with pytest.raises(CommandError, match="markup must be a positive number"):
        call_command("sync_prices", str(bad), "--markup", "0")


def test_the_sync_keeps_a_cache_write_price_it_does_not_set(catalog, source):
    from billing.models import Price

    make_price("gpt-test", "1", "2", cache_write_usd_per_m="3.75", request_usd="0.01", image_usd="0.04", second_usd="0.0001")
    sync(source=source, apply=True)
    synced = Price.objects.get(model="gpt-test")
    assert (synced.input_micros_per_m, synced.output_micros_per_m) == (2_500_000, 10_000_000)  # what it sets
    assert (synced.cache_write_micros_per_m, synced.request_micros) == (3_750_000, 10_000)  # what it does not
    assert (synced.image_micros, synced.second_micros) == (40_000, 100)
