"""/v1/messages through the official anthropic SDK, served by each upstream protocol."""

from __future__ import annotations

import base64

import anthropic
import pytest

from tests.conftest import make_key
from tests.routing.conftest import charge_micros, ledger_charge, serve_model

KINDS = ["openai", "anthropic", "gemini"]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PIXEL = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
).decode()


def ask(client, **overrides):
    params = {"model": "m-test", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}], **overrides}
    return client.messages.with_raw_response.create(**params)


@pytest.mark.parametrize("kind", KINDS)
def test_it_answers_a_message_from_each_upstream(anthropic_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    raw = ask(anthropic_client, system="Be brief.")
    message = raw.parse()

    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == protocol_upstreams[kind].text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4
    assert raw.headers["request-id"] == raw.headers["x-request-id"]


@pytest.mark.parametrize("kind", KINDS)
def test_it_streams_anthropic_events_from_each_upstream(anthropic_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    with anthropic_client.messages.stream(model="m-test", max_tokens=256, messages=[{"role": "user", "content": "hi"}]) as stream:
        names = [event.type for event in stream]
        text = stream.get_final_text()
        final = stream.get_final_message()

    assert text == protocol_upstreams[kind].text
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_start" in names and "content_block_stop" in names and "message_delta" in names
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_stream", [False, True], ids=["whole", "stream"])
def test_a_tool_call_round_trips_through_each_upstream(anthropic_client, protocol_upstreams, kind, is_stream):
    serve_model(kind, protocol_upstreams)
    messages = [{"role": "user", "content": "Weather in Paris?"}]

    if is_stream:
        with anthropic_client.messages.stream(model="m-test", max_tokens=256, messages=messages, tools=[WEATHER_TOOL]) as stream:
            first = stream.get_final_message()
    else:
        first = anthropic_client.messages.create(model="m-test", max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    call = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use"
    assert call.name == "get_weather" and call.input["city"] == "Paris"

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]
    second = anthropic_client.messages.create(model="m-test", max_tokens=256, messages=messages, tools=[WEATHER_TOOL])

    assert second.stop_reason == "end_turn"
    assert "sunny, 21C" in second.content[0].text


def test_tool_results_reach_an_openai_upstream_as_tool_messages(anthropic_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    anthropic_client.messages.create(
        model="m-test",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}, {"type": "text", "text": "and tomorrow?"}]},
        ],
    )

    sent = protocol_upstreams["openai"].requests[-1].json
    assert sent["messages"][1]["tool_calls"][0] == {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}
    assert sent["messages"][3] == {"role": "user", "content": "and tomorrow?"}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_reaches_each_upstream(anthropic_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}

    ask(anthropic_client, messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])

    sent = protocol_upstreams[kind].requests[-1].json
    if kind == "openai":
        assert sent["messages"][0]["content"][0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    elif kind == "anthropic":
        assert sent["messages"][0]["content"][0] == image
    else:
        assert sent["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}


def test_an_anthropic_upstream_gets_the_clients_body_and_betas_untouched(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]

    anthropic_client.messages.create(
        model="m-test",
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": "hi"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )

    seen = protocol_upstreams["anthropic"].requests[-1]
    assert seen.json["system"] == system
    assert seen.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert seen.json["model"] == "claude-sonnet-4-5"
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert seen.headers["x-api-key"] == "sk-anthropic-upstream"
    assert seen.headers["anthropic-version"] == "2023-06-01"


def test_thinking_from_an_anthropic_upstream_keeps_its_signature(anthropic_client, protocol_upstreams):
    from tests.fakes.anthropic_upstream import SIGNATURE

    serve_model("anthropic", protocol_upstreams)

    with anthropic_client.messages.stream(
        model="m-test", max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024}, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()

    assert final.content[0].type == "thinking" and final.content[0].signature == SIGNATURE


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_stream", [False, True], ids=["whole", "stream"])
def test_the_request_is_charged_once_on_the_ledger(anthropic_client, protocol_upstreams, kind, is_stream):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("ok", cache_read=5, cache_creation=3)

    if is_stream:
        with anthropic_client.messages.with_streaming_response.create(
            model="m-test", max_tokens=256, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            for _ in response.iter_lines():
                pass
    else:
        request_id = ask(anthropic_client).headers["x-request-id"]

    expected = {
        "openai": charge_micros(prompt=12, completion=4),
        "anthropic": charge_micros(prompt=20 + 5 + 3, completion=4, cached=5),
        "gemini": charge_micros(prompt=15, completion=4),
    }[kind]
    assert ledger_charge(request_id) == expected


def test_cache_tokens_are_reported_to_the_client(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("ok", cache_read=5, cache_creation=3)

    message = ask(anthropic_client).parse()

    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (20, 5, 3)


def test_openai_cached_tokens_come_back_as_cache_reads(anthropic_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    protocol_upstreams["openai"].set_mode("ok", cached_tokens=8)

    message = ask(anthropic_client).parse()

    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (4, 8)


def test_it_accepts_a_bearer_key_too(relay, alice, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    client = anthropic.Anthropic(base_url=relay.url, auth_token=alice.key, api_key=None, max_retries=0)

    assert client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]).content


def test_count_tokens_counts_offline(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    short = anthropic_client.messages.count_tokens(model="m-test", messages=[{"role": "user", "content": "hi"}])
    longer = anthropic_client.messages.count_tokens(
        model="m-test", system="You are a careful assistant.", messages=[{"role": "user", "content": "hi " * 50}], tools=[WEATHER_TOOL]
    )

    assert 0 < short.input_tokens < longer.input_tokens
    assert protocol_upstreams["anthropic"].requests == []


# -- errors: each status raises the SDK's own exception --------------------------------------


def test_a_bad_key_is_an_authentication_error(relay, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    client = anthropic.Anthropic(base_url=relay.url, api_key="sk-wrong", max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_a_model_the_key_may_not_use_is_permission_denied(relay, alice, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    serve_model("openai", protocol_upstreams, model="other-model", name="other")
    limited = make_key(alice.tenant, allowed_models=["other-model"])
    client = anthropic.Anthropic(base_url=relay.url, api_key=limited.key, max_retries=0)

    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["error"]["type"] == "permission_error"


def test_an_unknown_model_is_not_found(anthropic_client, protocol_upstreams):
    with pytest.raises(anthropic.NotFoundError) as caught:
        anthropic_client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["error"]["type"] == "not_found_error"


def test_a_rate_limited_key_gets_a_rate_limit_error(relay, alice, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    limited = make_key(alice.tenant, rpm=1)
    client = anthropic.Anthropic(base_url=relay.url, api_key=limited.key, max_retries=0)
    client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_an_empty_balance_is_a_402_status_error(relay, protocol_upstreams):
    from tests.conftest import make_tenant

    serve_model("openai", protocol_upstreams)
    broke = make_key(make_tenant("broke", credit=None, wallet=None))
    client = anthropic.Anthropic(base_url=relay.url, api_key=broke.key, max_retries=0)

    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="m-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"


@pytest.mark.parametrize("kind, mode", [("anthropic", "529"), ("openai", "500"), ("gemini", "503")])
def test_failing_upstreams_give_a_server_error(anthropic_client, protocol_upstreams, kind, mode):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode(mode)

    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(anthropic_client)

    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"


def test_an_overloaded_anthropic_upstream_fails_over(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams, priority=10)
    serve_model("openai", protocol_upstreams, name="backup")
    protocol_upstreams["anthropic"].set_mode("529")

    message = ask(anthropic_client).parse()

    assert message.content[0].text == protocol_upstreams["openai"].text


def test_an_upstream_refusal_is_a_bad_request(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("context_overflow")

    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(anthropic_client)

    assert "prompt is too long" in caught.value.body["error"]["message"]


def test_a_malformed_request_is_a_bad_request_in_anthropics_shape(anthropic_client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.post("/v1/messages", body={"model": "m-test", "messages": []}, cast_to=object)

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_that_breaks_ends_with_an_error_event(anthropic_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode("stream_error")

    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic_client.messages.stream(model="m-test", max_tokens=256, messages=[{"role": "user", "content": "hi"}]) as stream:
            for _ in stream:
                pass

    assert "stream broke" in str(caught.value)


def test_a_mangled_key_cannot_count_tokens(relay, alice, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key + "x", max_retries=0)

    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model="m-test", messages=[{"role": "user", "content": "hi"}])


def test_bobs_counting_never_spends_alices_request_rate(relay, alice, bob, protocol_upstreams):
    """count_tokens counts against the caller's key: bob's real key, used up, leaves alice's
    key (same model, same limit) every request it had, and his refusal names nothing of hers."""
    from accounts.models import ApiKey
    from accounts.services import api_key_update

    serve_model("openai", protocol_upstreams)
    for someone in (alice, bob):
        api_key_update(key=ApiKey.objects.get(pk=someone.key_id), rpm=2)
    ask = {"model": "m-test", "messages": [{"role": "user", "content": "hi"}]}
    alices = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)
    bobs = anthropic.Anthropic(base_url=relay.url, api_key=bob.key, max_retries=0)

    for _ in range(2):
        assert bobs.messages.count_tokens(**ask).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        bobs.messages.count_tokens(**ask)
    for _ in range(2):
        assert alices.messages.count_tokens(**ask).input_tokens > 0
    assert "alice" not in caught.value.response.text and alice.key[:12] not in caught.value.response.text
    assert protocol_upstreams["openai"].requests == []


def test_the_beta_endpoint_claude_code_uses_works_too(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    message = anthropic_client.beta.messages.create(
        model="m-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}], betas=["context-1m-2025-08-07"]
    )

    assert message.content[0].text == protocol_upstreams["anthropic"].text
    assert protocol_upstreams["anthropic"].requests[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_it_logs_the_request_under_its_endpoint(anthropic_client, protocol_upstreams, alice):
    from observability.models import RequestLog
    from tests.conftest import flush_logs

    serve_model("gemini", protocol_upstreams)
    ask(anthropic_client)
    flush_logs()

    log = RequestLog.objects.get()
    assert (log.tenant_id, log.endpoint, log.model, log.channel_name, log.status) == (alice.tenant.pk, "messages", "m-test", "gemini-channel", 200)
    assert (log.prompt_tokens, log.completion_tokens) == (15, 4)
