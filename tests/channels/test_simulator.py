"""The what-if simulator predicts the router: same inputs and seed, same order."""

import json

import pytest
from django.core.management import call_command

from tests.conftest import make_channel, make_price
from tests.conftest import chat, flush_all


@pytest.fixture
def four(upstreams, transactional_db):
    fakes = upstreams("s0", "s1", "s2", "s3", chunks=1)
    make_price("gpt-test", "1", "2")
    for i, fake in enumerate(fakes[:3]):
        make_channel(f"s{i}", fake.url + "/v1", models=["gpt-test"], priority=5, weight=i + 1, cost_ratio=str(1 - i / 10))
    make_channel("s3", fakes[3].url + "/v1", models=["gpt-test"], priority=0)  # the backup
    return fakes


def latest_log():
    from observability.models import RequestLog

    flush_all()
    return RequestLog.objects.order_by("-created_at").first()


@pytest.mark.parametrize("mode", ["weighted", "thompson", "normal"])
def test_the_router_makes_the_simulated_choice(relay, alice, four, mode):
    from channels import strategies
    from channels.simulator import simulate

    choices = []
    for seed in range(8):
        predicted = simulate(model="gpt-test", group="default", mode=mode, seed=seed)
        strategies.rng_seed(seed)
        assert chat(relay, alice.key, mode=mode).status_code == 200
        log = latest_log()
        assert log.attempts[0]["channel"] == predicted["choice"]
        assert [c["channel"] for c in log.candidates] == [c["channel"] for c in predicted["candidates"]]
        assert [c["score"] for c in log.candidates] == [c["score"] for c in predicted["candidates"]]
        choices.append(predicted["choice"])
    if mode != "normal":  # random modes: the seeds lead to different first choices
        assert len(set(choices)) > 1
    assert "s3" not in choices  # the backup tier is last


def test_the_simulator_shows_why_candidates_are_skipped(relay, alice, four):
    from channels.health.board import board
    from channels.models import Channel
    from channels.simulator import simulate

    board.cool(Channel.objects.get(name="s0").pk, seconds=60, reason="maintenance")
    Channel.objects.filter(name="s1").update(status="disabled", status_reason="contract ended")
    result = simulate(model="gpt-test", mode="lowest_cost", seed=1)
    skipped = {c["channel"]: c["reason"] for c in result["candidates"] if not c["eligible"]}
    assert skipped["s1"] == "disabled (contract ended)"
    assert skipped["s0"].startswith("cooling down until") and "(maintenance)" in skipped["s0"]
    assert [c["channel"] for c in result["candidates"] if c["eligible"]] == ["s2", "s3"]
    assert result["choice"] == "s2"
    assert chat(relay, alice.key, mode="lowest_cost").status_code == 200
    assert latest_log().channel_name == "s2"


def test_simulate_route_prints_json(four, capsys):
    call_command("simulate_route", "gpt-test", "--mode", "lowest_cost", "--seed", "3", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["choice"] == "s2" and result["mode"] == "lowest_cost"
    assert [c["rank"] for c in result["candidates"]] == [1, 2, 3, 4]


def test_simulate_route_refuses_an_unknown_model(four, capsys):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no model or alias named 'nope'"):
        call_command("simulate_route", "nope", "--json")
