"""Routing modes through the real relay: header > key > group > default, every mode orders
candidates as documented, and the request log explains the choice."""

import pytest

from tests.conftest import make_channel, make_key, make_price
from tests.conftest import chat, flush_all


@pytest.fixture
def trio(upstreams, transactional_db):
    """Three channels of one priority: cheap-but-light, pricey-heavy, middle."""
    fakes = upstreams("cheap", "pricey", "middle")
    make_price("gpt-test", "1", "2")
    make_channel("cheap", fakes[0].url + "/v1", models=["gpt-test"], weight=1, cost_ratio="0.3")
    make_channel("pricey", fakes[1].url + "/v1", models=["gpt-test"], weight=10, cost_ratio="1.0")
    make_channel("middle", fakes[2].url + "/v1", models=["gpt-test"], weight=3, cost_ratio="0.6")
    return fakes


def key_with_mode(tenant, mode: str):
    from accounts.models import ApiKey

    actor = make_key(tenant)
    ApiKey.objects.filter(pk=actor.key_id).update(mode=mode)  # no service sets it yet (an operator's field)
    return actor


def channel_ids():
    from channels.models import Channel

    return list(Channel.objects.values_list("pk", flat=True))


def first_channel():
    from observability.models import RequestLog

    flush_all()
    return RequestLog.objects.order_by("-created_at").first()


def test_an_unknown_mode_header_is_a_400(relay, alice, trio):
    answer = chat(relay, alice.key, mode="fastest-please")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_mode")
    assert "thompson" in error["message"]
    assert sum(len(f.requests) for f in trio) == 0


def test_lowest_cost_goes_to_the_cheapest_channel(relay, alice, trio):
    for _ in range(3):
        assert chat(relay, alice.key, mode="lowest_cost").status_code == 200
        log = first_channel()
        assert log.channel_name == "cheap"
        assert [c["channel"] for c in log.candidates] == ["cheap", "middle", "pricey"]


def test_cheap_mode_prefers_cost_and_high_confidence_prefers_the_operators_weight(relay, alice, trio):
    assert chat(relay, alice.key, mode="cheap").status_code == 200
    assert first_channel().channel_name == "cheap"
    assert chat(relay, alice.key, mode="high_confidence").status_code == 200
    log = first_channel()
    assert log.channel_name == "pricey"  # no failures anywhere: the configured weight decides
    assert all(c["score"] is not None and c["state"] == "healthy" for c in log.candidates)


def test_high_confidence_avoids_a_channel_that_has_been_failing(relay, alice, trio, settings):
    from channels.health.board import board
    from channels.models import Channel

    settings.ROUTING_TRANSIENT_COOLDOWN_S = 0  # failures count, but nothing cools: only the score decides
    pricey = Channel.objects.get(name="pricey")
    trio[1].set_mode("500")
    for _ in range(3):
        assert chat(relay, alice.key, mode="high_confidence").status_code == 200  # tried first, fails over
    board.flush()
    assert board.view("gpt-test", [pricey.pk], fresh=True).pair(pricey.pk, "gpt-test").failures == 3
    trio[1].set_mode("ok")
    asked = len(trio[1].requests)
    assert chat(relay, alice.key, mode="high_confidence").status_code == 200
    assert first_channel().channel_name != "pricey" and len(trio[1].requests) == asked


def test_lowest_latency_goes_to_the_fastest(relay, alice, trio):
    from channels.health.board import board
    from channels.models import Channel

    ids = {c.name: c.pk for c in Channel.objects.all()}
    for name, latency in (("cheap", 900), ("pricey", 400), ("middle", 50)):
        board.succeeded(ids[name], "gpt-test", latency_ms=latency)
    assert chat(relay, alice.key, mode="lowest_latency").status_code == 200
    assert first_channel().channel_name == "middle"


def test_the_header_beats_the_key_which_beats_the_group(relay, alice, trio):
    from billing.services import group_set
    from observability.models import RewardLog

    group_set(name="default", mode="lowest_cost")
    keyed = key_with_mode(alice.tenant, "high_confidence")

    assert chat(relay, alice.key).status_code == 200  # group's mode
    assert chat(relay, keyed.key).status_code == 200  # key's mode
    assert chat(relay, keyed.key, mode="weighted").status_code == 200  # the header's
    flush_all()
    modes = list(RewardLog.objects.filter(channel_id__in=channel_ids()).order_by("created_at", "id").values_list("mode", flat=True))
    assert modes == ["lowest_cost", "high_confidence", "weighted"]


def test_a_bad_mode_stored_on_a_key_falls_back_to_the_default(relay, alice, trio):
    from observability.models import RewardLog

    odd = key_with_mode(alice.tenant, "teleport")
    assert chat(relay, odd.key).status_code == 200
    flush_all()
    assert RewardLog.objects.get(channel_id__in=channel_ids()).mode == "weighted"


def test_weighted_shares_traffic_by_weight(relay, alice, trio):
    from channels import strategies

    strategies.rng_seed(11)
    for _ in range(70):
        assert chat(relay, alice.key).status_code == 200
    counts = [len(f.requests) for f in trio]  # weights 1, 10, 3
    assert counts[1] > counts[2] > counts[0]
    assert 35 <= counts[1] <= 65
