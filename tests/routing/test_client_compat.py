"""What browser front-ends, the Anthropic SDK / Claude Code and One API-style clients expect of
/v1 beyond chat: CORS, model lookup in each SDK's shape, x-ratelimit-* on every answer, the
One API subscription semantics, and the input-token count in a translated message_start."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import make_channel, make_key, make_price
from tests.routing.conftest import serve_model

RATE_HEADERS = [f"x-ratelimit-{kind}-{unit}" for kind in ("limit", "remaining", "reset") for unit in ("requests", "tokens")]


def test_a_preflight_is_answered_without_a_key(relay, transactional_db):
    response = httpx.options(
        relay.url + "/v1/chat/completions",
        headers={
            "origin": "https://chat.example.org",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "x-stainless-os" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


def test_answers_to_another_origin_carry_cors_headers_and_expose_the_request_id(relay, alice):
    response = httpx.get(relay.url + "/v1/models", headers={"origin": "https://chat.example.org", "authorization": f"Bearer {alice.key}"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in response.headers["access-control-expose-headers"]
    refused = httpx.get(relay.url + "/v1/models", headers={"origin": "https://chat.example.org", "authorization": "Bearer sk-wrong"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


def test_a_narrowed_origin_list_refuses_other_origins(settings, transactional_db):
    from starlette.testclient import TestClient

    from routing.app import build_app

    settings.CORS_ALLOW_ORIGINS = ["https://ok.example"]  # read when the app is built: build one
    client = TestClient(build_app())
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}

    allowed = client.options("/v1/chat/completions", headers={"origin": "https://ok.example", **preflight})
    refused = client.options("/v1/chat/completions", headers={"origin": "https://evil.example", **preflight})

    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_models_retrieve_finds_ids_with_slashes(relay, alice, upstream_factory):
    upstream = upstream_factory(name="slashes")
    make_channel("deepseek", upstream.url + "/v1", models=["deepseek/deepseek-chat"], brand="deepseek")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)

    model = client.models.retrieve("deepseek/deepseek-chat")

    assert model.id == "deepseek/deepseek-chat" and model.object == "model"
    assert model.owned_by == "deepseek" and model.created > 1_600_000_000
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("deepseek/nope")
    assert caught.value.code == "model_not_found"


def test_a_model_the_key_may_not_use_is_not_found(relay, alice, upstream_factory):
    upstream = upstream_factory(name="limited")
    make_channel("limited", upstream.url + "/v1", models=["gpt-test", "gpt-other"])
    narrow = make_key(alice.tenant, allowed_models=["gpt-test"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=narrow.key, max_retries=0)
    assert client.models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-other")


def test_the_anthropic_sdk_lists_and_pages_models_in_its_own_shape(relay, alice, upstream_factory):
    upstream = upstream_factory(name="anthro-list")
    make_channel("three", upstream.url + "/v1", models=["m-a", "m-b", "m-c"])
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)

    first = client.models.list(limit=2)
    everything = [m.id for m in client.models.list(limit=2)]  # auto-paging follows has_more / last_id

    assert [m.id for m in first.data] == ["m-a", "m-b"] and first.has_more is True
    assert first.first_id == "m-a" and first.last_id == "m-b"
    assert everything == ["m-a", "m-b", "m-c"]
    one = client.models.retrieve("m-b")
    assert one.type == "model" and one.id == "m-b" and one.display_name == "m-b"
    assert one.created_at.year >= 2024
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("m-z")


@pytest.mark.parametrize("limit", ["²", "١", "0", "1001", "two"])
def test_a_page_limit_that_is_not_a_plain_number_is_a_400_in_anthropics_shape(relay, alice, upstream_factory, limit):
    upstream = upstream_factory(name="anthro-limit")
    make_channel("limit", upstream.url + "/v1", models=["m-a"])

    answer = httpx.get(relay.url + "/v1/models", params={"limit": limit}, headers={"x-api-key": alice.key, "anthropic-version": "2023-06-01"})

    assert answer.status_code == 400
    assert answer.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "'limit' must be an integer from 1 to 1000."}}


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/gpt-test", "/v1/dashboard/billing/subscription"])
def test_every_answer_to_a_known_key_carries_rate_limit_headers(relay, alice, upstream_factory, path):
    upstream = upstream_factory(name="rl")
    make_channel("rl", upstream.url + "/v1", models=["gpt-test"])
    unlimited = httpx.get(relay.url + path, headers={"authorization": f"Bearer {alice.key}"})
    assert unlimited.status_code == 200
    assert all(unlimited.headers[h] for h in RATE_HEADERS)
    assert unlimited.headers["x-ratelimit-limit-requests"] == "2147483647"

    limited = make_key(alice.tenant, rpm=5)
    first = httpx.get(relay.url + path, headers={"authorization": f"Bearer {limited.key}"})
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-limit-tokens"] == "2147483647"


def test_an_error_answer_carries_rate_limit_headers_too(relay, alice):
    limited = make_key(alice.tenant, rpm=3)
    response = httpx.get(relay.url + "/v1/models/no-such-model", headers={"authorization": f"Bearer {limited.key}"})
    assert response.status_code == 404
    assert response.headers["x-ratelimit-limit-requests"] == "3"
    assert response.headers["x-ratelimit-remaining-requests"] == "2"


def test_subscription_hard_limit_is_what_is_left_plus_this_months_usage(relay, alice, upstream_factory):
    upstream = upstream_factory(name="sub", chunks=10)
    make_price("gpt-test", "1000", "2000")  # 12*1000 + 10*2000 = 32,000 micro-USD
    make_channel("sub", upstream.url + "/v1", models=["gpt-test"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    headers = {"authorization": f"Bearer {alice.key}"}

    subscription = httpx.get(relay.url + "/dashboard/billing/subscription", headers=headers).json()
    usage = httpx.get(relay.url + "/dashboard/billing/usage", headers=headers).json()

    assert subscription["hard_limit_usd"] == 100.0  # 99.968 left + 0.032 spent this month
    assert round(subscription["hard_limit_usd"] - usage["total_usage"] / 100, 6) == 99.968


def test_a_translated_stream_tells_the_input_tokens_in_message_start(anthropic_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    prompt = "Tell me about the weather in Lisbon in spring, please, in some detail."

    with anthropic_client.messages.stream(model="m-test", max_tokens=64, messages=[{"role": "user", "content": prompt}]) as stream:
        start = next(event for event in stream if event.type == "message_start")
        final = stream.get_final_message()

    assert start.message.usage.input_tokens > 10
    assert final.usage.input_tokens > 0


def test_a_translated_stream_of_a_free_model_counts_the_input_tokens_too(anthropic_client, protocol_upstreams):
    from tests.routing.conftest import serve_model as serve
    from billing.services import price_set

    serve("openai", protocol_upstreams)
    price_set(model="m-test", input_usd_per_m="0", output_usd_per_m="0", is_free=True)

    with anthropic_client.messages.stream(
        model="m-test", max_tokens=64, messages=[{"role": "user", "content": "Count me, please, all of me."}]
    ) as stream:
        start = next(event for event in stream if event.type == "message_start")
        stream.get_final_message()

    assert start.message.usage.input_tokens > 5
