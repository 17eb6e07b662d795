"""tokenhub/vote, tokenhub/refine and tokenhub/adversarial against fake upstreams on loopback:
each step is a sub-call routed, charged and logged like any request and linked to its run; the
run's usage is the sum of its steps'; the ceiling is enforced before anything is sent; a failing
model is left out or reported."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import flush_logs, make_channel, make_key, make_price


@pytest.fixture
def three_models(relay, alice, upstream_factory):
    fakes = {}
    for name in ("m-one", "m-two", "m-judge"):
        fakes[name] = upstream_factory(name=name, chunks=4)
        make_price(name, "1", "2")
        make_channel(name, fakes[name].url + "/v1", models=[name])
    return fakes


def client_for(relay, alice):
    return openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0, timeout=60)


def logs_of(run_id: str):
    from observability.models import RequestLog

    flush_logs()
    return list(RequestLog.objects.filter(parent_request_id=run_id).order_by("request_id"))


def charges(request_ids) -> dict[str, int]:
    from billing.models import LedgerEntry

    return {e.request_id: -e.amount_micros for e in LedgerEntry.objects.filter(request_id__in=request_ids)}


def test_vote_asks_every_model_then_the_judge_and_sums_the_usage(relay, alice, three_models):
    raw = client_for(relay, alice).chat.completions.with_raw_response.create(
        model="tokenhub/vote", messages=[{"role": "user", "content": "What is 2+2?"}],
        extra_body={"models": ["m-one", "m-two"], "judge": "m-judge"},
    )
    completion = raw.parse()
    run_id = raw.headers["x-request-id"]

    assert completion.model == "tokenhub/vote" and completion.choices[0].message.content
    assert [len(f.requests) for f in three_models.values()] == [1, 1, 1], [(s["model"], s["status"], s.get("error")) for s in completion.model_extra["tokenhub"]["steps"]]
    steps = logs_of(run_id)
    assert sorted(s.model for s in steps) == ["m-judge", "m-one", "m-two"]
    assert all(s.status == 200 for s in steps)
    assert completion.usage.prompt_tokens == sum(s.prompt_tokens for s in steps)
    assert completion.usage.completion_tokens == sum(s.completion_tokens for s in steps)
    paid = charges([s.request_id for s in steps])
    assert len(paid) == 3 and all(amount > 0 for amount in paid.values())  # each step charged once
    judge_prompt = three_models["m-judge"].requests[0].json["messages"][-1]["content"]
    assert "Answer 1" in judge_prompt and "Answer 2" in judge_prompt
    extra = completion.model_extra["tokenhub"]
    assert extra["mode"] == "tokenhub/vote" and [s["role"] for s in extra["steps"]] == ["answer", "answer", "judge"]


def test_refine_drafts_then_critiques_and_rewrites_each_round(relay, alice, three_models):
    completion = client_for(relay, alice).chat.completions.create(
        model="tokenhub/refine", messages=[{"role": "user", "content": "Write a haiku."}],
        extra_body={"models": ["m-one", "m-two"], "rounds": 2},
    )
    roles = [s["role"] for s in completion.model_extra["tokenhub"]["steps"]]
    assert roles == ["draft", "critique", "rewrite", "critique", "rewrite"]
    assert (len(three_models["m-one"].requests), len(three_models["m-two"].requests)) == (3, 2)


def test_adversarial_answers_attacks_and_defends(relay, alice, three_models):
    completion = client_for(relay, alice).chat.completions.create(
        model="tokenhub/adversarial", messages=[{"role": "user", "content": "Is the earth flat?"}],
        extra_body={"models": ["m-one", "m-two"]},
    )
    roles = [s["role"] for s in completion.model_extra["tokenhub"]["steps"]]
    assert roles == ["answer", "attack", "defense"]
    assert "attacked" in three_models["m-one"].requests[-1].json["messages"][-1]["content"]


def test_the_final_answer_streams_with_the_summed_usage(relay, alice, three_models):
    chunks = list(client_for(relay, alice).chat.completions.create(
        model="tokenhub/vote", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, extra_body={"models": ["m-one", "m-two"], "judge": "m-judge"},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text and usage is not None and usage.total_tokens > 0


def test_a_failing_model_is_left_out_of_the_vote_and_named_to_the_judge(relay, alice, three_models):
    make_price("m-broken", "1", "2")
    make_channel("broken", "http://127.0.0.1:9/v1", models=["m-broken"])  # nothing listens there

    completion = client_for(relay, alice).chat.completions.create(
        model="tokenhub/vote", messages=[{"role": "user", "content": "hi"}],
        extra_body={"models": ["m-one", "m-broken"], "judge": "m-judge"},
    )

    steps = completion.model_extra["tokenhub"]["steps"]
    assert [s["status"] >= 500 for s in steps] == [False, True, False]
    assert "m-broken could not answer" in three_models["m-judge"].requests[0].json["messages"][-1]["content"]


def test_the_ceiling_refuses_a_run_up_front_and_nothing_is_sent(relay, alice, three_models):
    response = httpx.post(
        relay.url + "/v1/chat/completions",
        json={"model": "tokenhub/vote", "messages": [{"role": "user", "content": "hi"}], "models": ["m-one", "m-two"],
              "judge": "m-judge", "max_tokens": 1000},
        headers={"authorization": f"Bearer {alice.key}", "X-TokenHub-Max-Cost": "0.000001"},
    )
    assert response.status_code == 402
    assert "max_cost" in response.json()["error"]["message"]
    assert sum(len(f.requests) for f in three_models.values()) == 0


@pytest.mark.parametrize(
    "extra, param",
    [({"models": "m-one"}, "models"), ({"models": ["tokenhub/vote"]}, "models"), ({"rounds": 9}, "rounds"),
     ({"judge": 3}, "judge")],
)
def test_bad_orchestration_fields_are_refused(relay, alice, three_models, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(relay, alice).chat.completions.create(model="tokenhub/vote", messages=[{"role": "user", "content": "hi"}], extra_body=extra)
    assert caught.value.body["param"] == param
    assert sum(len(f.requests) for f in three_models.values()) == 0


def test_an_unknown_orchestration_model_is_not_found(relay, alice, three_models):
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(relay, alice).chat.completions.create(model="tokenhub/chaos", messages=[{"role": "user", "content": "hi"}])
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert "tokenhub/chaos" in caught.value.message


@pytest.mark.parametrize(
    "extra, param", [({"models": ["m-one", "nope"]}, "models"), ({"models": ["m-one"], "judge": "nope"}, "judge")]
)
def test_an_unknown_model_in_the_run_is_not_found_as_in_a_plain_request(relay, alice, three_models, extra, param):
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(relay, alice).chat.completions.create(model="tokenhub/vote", messages=[{"role": "user", "content": "hi"}], extra_body=extra)
    assert (caught.value.code, caught.value.param, caught.value.type) == ("model_not_found", param, "invalid_request_error")
    assert "'nope'" in caught.value.message
    assert sum(len(f.requests) for f in three_models.values()) == 0


@pytest.mark.parametrize(
    "extra, param", [({"models": ["m-one", "m-two"]}, "models"), ({"models": ["m-one"], "judge": "m-judge"}, "judge")]
)
def test_a_model_the_key_may_not_use_in_the_run_is_not_allowed_as_in_a_plain_request(relay, alice, three_models, extra, param):
    limited = make_key(alice.tenant, allowed_models=["m-one"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client_for(relay, limited).chat.completions.create(
            model="tokenhub/vote", messages=[{"role": "user", "content": "hi"}], extra_body=extra
        )
    assert (caught.value.code, caught.value.param) == ("model_not_allowed", param)
    assert sum(len(f.requests) for f in three_models.values()) == 0


# --- a run where nothing answered: refused for the client's reason, or 502 ------------------------


def ask_run(client, mode="tokenhub/vote", **extra):
    return client.chat.completions.create(model=mode, messages=[{"role": "user", "content": "hi"}], extra_body=extra)


def no_money_moved(tenant) -> None:
    from billing.models import Hold, LedgerEntry

    flush_logs()
    assert not Hold.objects.filter(status=Hold.Status.OPEN).exists()
    assert not LedgerEntry.objects.filter(balance__tenant=tenant, amount_micros__lt=0).exists()


@pytest.mark.parametrize("mode", ["tokenhub/vote", "tokenhub/refine", "tokenhub/adversarial"])
def test_a_run_no_balance_can_pay_for_is_402_and_charges_nothing(relay, three_models, mode):
    from tests.conftest import make_tenant

    broke = make_key(make_tenant("broke", credit=None, wallet=None))
    with pytest.raises(openai.APIStatusError) as caught:
        ask_run(client_for(relay, broke), mode, models=["m-one", "m-two"], judge="m-judge")

    assert caught.value.status_code == 402
    assert (caught.value.code, caught.value.type) == ("insufficient_quota", "insufficient_quota")
    assert caught.value.response.headers["x-should-retry"] == "false"
    if mode == "tokenhub/vote":
        assert "m-one:" in caught.value.message and "m-two:" in caught.value.message
    assert sum(len(f.requests) for f in three_models.values()) == 0
    no_money_moved(broke.tenant)


def test_a_run_past_the_keys_spending_cap_is_402_saying_so(relay, alice, three_models):
    capped = make_key(alice.tenant, daily_cap_micros=1)
    with pytest.raises(openai.APIStatusError) as caught:
        ask_run(client_for(relay, capped), models=["m-one", "m-two"], judge="m-judge")

    assert caught.value.status_code == 402 and caught.value.code == "insufficient_quota"
    assert "cap" in caught.value.message
    assert sum(len(f.requests) for f in three_models.values()) == 0
    no_money_moved(alice.tenant)


def test_a_run_of_models_without_a_price_is_503_model_not_priced(relay, alice, three_models):
    for name in ("m-free-a", "m-free-b"):
        make_channel(name, three_models["m-one"].url + "/v1", models=[name])

    with pytest.raises(openai.InternalServerError) as caught:
        ask_run(client_for(relay, alice), models=["m-free-a", "m-free-b"], judge="m-judge")

    assert caught.value.status_code == 503 and caught.value.code == "model_not_priced"
    assert "m-free-a" in caught.value.message and "m-free-b" in caught.value.message
    assert sum(len(f.requests) for f in three_models.values()) == 0


def test_a_run_with_no_available_channel_is_503_no_available_channel(relay, alice, three_models):
    from channels.services import channel_set_status

    make_price("m-off", "1", "2")
    off = make_channel("off", three_models["m-one"].url + "/v1", models=["m-off"])
    channel_set_status(channel=off, is_enabled=False, reason="maintenance")

    with pytest.raises(openai.InternalServerError) as caught:
        ask_run(client_for(relay, alice), "tokenhub/refine", models=["m-off", "m-two"])

    assert caught.value.status_code == 503 and caught.value.code == "no_available_channel"
    assert "maintenance" not in caught.value.message
    assert sum(len(f.requests) for f in three_models.values()) == 0


def test_a_run_where_a_step_reached_an_upstream_stays_502(relay, alice, three_models):
    make_price("m-broken", "1", "2")
    make_channel("broken", "http://127.0.0.1:9/v1", models=["m-broken"])  # nothing listens there
    make_channel("unpriced", three_models["m-one"].url + "/v1", models=["m-unpriced"])

    with pytest.raises(openai.InternalServerError) as caught:
        ask_run(client_for(relay, alice), models=["m-broken", "m-unpriced"], judge="m-judge")

    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert "m-broken:" in caught.value.message and "m-unpriced:" in caught.value.message


def test_a_run_refused_for_different_reasons_is_502(relay, alice, three_models):
    from channels.services import channel_set_status

    make_price("m-off", "1", "2")
    off = make_channel("off", three_models["m-one"].url + "/v1", models=["m-off"])
    channel_set_status(channel=off, is_enabled=False, reason="maintenance")
    make_channel("unpriced", three_models["m-one"].url + "/v1", models=["m-unpriced"])

    with pytest.raises(openai.InternalServerError) as caught:
        ask_run(client_for(relay, alice), models=["m-off", "m-unpriced"], judge="m-judge")

    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert sum(len(f.requests) for f in three_models.values()) == 0
