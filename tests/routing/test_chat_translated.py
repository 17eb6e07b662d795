"""/v1/chat/completions through the official openai SDK, served by Anthropic and Gemini
protocol_upstreams (translated both ways), plus tool round trips and images through every upstream."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.conftest import make_key
from tests.routing.conftest import charge_micros, ledger_charge, serve_model

TRANSLATED = ["anthropic", "gemini"]
KINDS = ["openai", "anthropic", "gemini"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    },
}
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


def hi(client, **overrides):
    params = {"model": "m-test", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], **overrides}
    return client.chat.completions.with_raw_response.create(**params)


@pytest.mark.parametrize("kind", TRANSLATED)
def test_it_answers_a_chat_from_a_translated_upstream(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    completion = hi(openai_client, max_tokens=50, temperature=0.5, stop=["END"]).parse()

    assert completion.choices[0].message.content == protocol_upstreams[kind].text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 4
    sent = protocol_upstreams[kind].requests[-1].json
    if kind == "anthropic":
        assert (sent["system"], sent["max_tokens"], sent["temperature"], sent["stop_sequences"]) == ("Be brief.", 50, 0.5, ["END"])
        assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    else:
        assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert sent["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 50, "stopSequences": ["END"]}
        assert sent["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


@pytest.mark.parametrize("kind", TRANSLATED)
@pytest.mark.parametrize("limits, held", [({}, 1000), ({"max_completion_tokens": 7, "max_tokens": 300}, 300)])
def test_a_translated_upstream_is_sent_the_output_limit_that_was_held(openai_client, protocol_upstreams, kind, limits, held):
    """Without a limit the model's max output is held and sent; with several, the largest."""
    from channels.services import model_set

    serve_model(kind, protocol_upstreams)
    model_set(public_id="m-test", max_output=1000)

    hi(openai_client, **limits)

    sent = protocol_upstreams[kind].requests[-1].json
    assert (sent["max_tokens"] if kind == "anthropic" else sent["generationConfig"]["maxOutputTokens"]) == held


def test_a_native_anthropic_request_is_sent_the_limit_it_held(anthropic_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    anthropic_client.messages.create(model="m-test", max_tokens=123, messages=[{"role": "user", "content": "hi"}])

    assert protocol_upstreams["anthropic"].requests[-1].json["max_tokens"] == 123


@pytest.mark.parametrize("kind", TRANSLATED)
def test_it_streams_openai_chunks_from_a_translated_upstream(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    stream = openai_client.chat.completions.create(
        model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == protocol_upstreams[kind].text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("kind", TRANSLATED)
def test_the_usage_chunk_is_hidden_unless_asked(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    chunks = list(openai_client.chat.completions.create(model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True))

    assert all(c.choices for c in chunks)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_stream", [False, True], ids=["whole", "stream"])
def test_a_tool_call_round_trips(openai_client, protocol_upstreams, kind, is_stream):
    serve_model(kind, protocol_upstreams)
    messages = [{"role": "user", "content": "Weather in Paris?"}]

    if is_stream:
        chunks = list(openai_client.chat.completions.create(model="m-test", messages=messages, tools=[WEATHER], stream=True))
        deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        first_call = deltas[0].tool_calls[0]
        call_id, name = first_call.id, first_call.function.name
        arguments = "".join(d.tool_calls[0].function.arguments or "" for d in deltas)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assistant = {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}
    else:
        completion = openai_client.chat.completions.create(model="m-test", messages=messages, tools=[WEATHER])
        call = completion.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        finish = [completion.choices[0].finish_reason]
        # as most clients do: only the fields of the OpenAI spec go back
        assistant = {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}
    assert finish == ["tool_calls"]
    assert name == "get_weather" and json.loads(arguments)["city"] == "Paris"

    messages += [assistant, {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"}]
    second = openai_client.chat.completions.create(model="m-test", messages=messages, tools=[WEATHER])

    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21C" in second.choices[0].message.content


def test_a_tool_result_reaches_anthropic_as_a_tool_result_block(openai_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    openai_client.chat.completions.create(
        model="m-test",
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        ],
    )

    sent = protocol_upstreams["anthropic"].requests[-1].json
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}],
    }
    assert sent["messages"][2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "rain"}]}
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]


def test_a_gemini_tool_call_keeps_its_thought_signature(openai_client, protocol_upstreams):
    from tests.fakes.gemini_upstream import THOUGHT_SIGNATURE

    serve_model("gemini", protocol_upstreams)
    first = openai_client.chat.completions.create(model="m-test", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]

    openai_client.chat.completions.create(
        model="m-test",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
        ],
    )

    contents = protocol_upstreams["gemini"].requests[-1].json["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == THOUGHT_SIGNATURE
    assert contents[2] == {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]}
    assert call.model_extra["extra_content"] == {"google": {"thought_signature": THOUGHT_SIGNATURE}}


@pytest.mark.parametrize("kind", TRANSLATED)
def test_an_image_reaches_a_translated_upstream(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    openai_client.chat.completions.create(
        model="m-test",
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]}],
    )

    sent = protocol_upstreams[kind].requests[-1].json
    data = PIXEL.partition(",")[2]
    if kind == "anthropic":
        assert sent["messages"][0]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    else:
        assert sent["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": data}}


def test_an_image_by_url_reaches_anthropic_as_a_url_source(openai_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    openai_client.chat.completions.create(
        model="m-test", messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]
    )

    image = protocol_upstreams["anthropic"].requests[-1].json["messages"][0]["content"][0]
    assert image == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize("kind", TRANSLATED)
@pytest.mark.parametrize("is_stream", [False, True], ids=["whole", "stream"])
def test_the_request_is_charged_once_on_the_ledger(openai_client, protocol_upstreams, kind, is_stream):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("ok", cache_read=5, cache_creation=3)
    protocol_upstreams["gemini"].set_mode("ok", cached_tokens=6, thoughts_tokens=2)

    if is_stream:
        with openai_client.chat.completions.with_streaming_response.create(
            model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            list(response.iter_lines())
    else:
        request_id = hi(openai_client).headers["x-request-id"]

    expected = {
        "anthropic": charge_micros(prompt=28, completion=4, cached=5),
        "gemini": charge_micros(prompt=15, completion=4 + 2, cached=6),
    }[kind]
    assert ledger_charge(request_id) == expected


def test_anthropic_cache_tokens_reach_the_log(openai_client, protocol_upstreams):
    from observability.models import RequestLog
    from tests.conftest import flush_logs

    serve_model("anthropic", protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("ok", cache_read=5, cache_creation=3)

    completion = hi(openai_client).parse()
    flush_logs()

    assert completion.usage.prompt_tokens == 28
    assert completion.usage.prompt_tokens_details.cached_tokens == 5
    assert completion.usage.prompt_tokens_details.cache_write_tokens == 3
    log = RequestLog.objects.get()
    assert (log.prompt_tokens, log.cached_tokens, log.completion_tokens) == (28, 5, 4)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, mode", [("anthropic", "529"), ("anthropic", "500"), ("gemini", "503"), ("gemini", "500")])
def test_a_failing_translated_upstream_is_a_502(openai_client, protocol_upstreams, kind, mode):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode(mode)

    with pytest.raises(openai.InternalServerError) as caught:
        hi(openai_client)

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"


@pytest.mark.parametrize("kind, mode", [("anthropic", "529"), ("anthropic", "429"), ("anthropic", "401"), ("anthropic", "credit"), ("gemini", "429"), ("gemini", "403"), ("gemini", "503")])
def test_retryable_upstream_failures_fail_over(openai_client, protocol_upstreams, kind, mode):
    serve_model(kind, protocol_upstreams, priority=10)
    serve_model("openai", protocol_upstreams, name="backup")
    protocol_upstreams[kind].set_mode(mode)

    completion = hi(openai_client).parse()

    assert completion.choices[0].message.content == protocol_upstreams["openai"].text


def test_gemini_rate_limits_cool_the_channel_for_its_retry_delay(openai_client, protocol_upstreams):
    from channels.health.board import board

    channel = serve_model("gemini", protocol_upstreams, priority=10)
    serve_model("openai", protocol_upstreams, name="backup")
    protocol_upstreams["gemini"].set_mode("429")

    hi(openai_client)

    cooldown = board.cooldown(channel.pk)
    assert cooldown is not None
    assert 15 < cooldown.until - time.time() <= 17.5


def test_a_bad_gemini_key_cools_the_channel_as_an_auth_failure(openai_client, protocol_upstreams):
    from channels.health.board import board

    channel = serve_model("gemini", protocol_upstreams)
    protocol_upstreams["gemini"].set_mode("ok", api_key="the-right-key")

    with pytest.raises(openai.InternalServerError):
        hi(openai_client)

    assert board.cooldown(channel.pk).reason == "auth (400)"


@pytest.mark.parametrize("kind, mode, text", [("anthropic", "context_overflow", "prompt is too long"), ("anthropic", "400", "temperature"), ("gemini", "400", "Invalid value")])
def test_an_upstream_refusal_is_a_400_with_its_reason(openai_client, protocol_upstreams, kind, mode, text):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode(mode)

    with pytest.raises(openai.BadRequestError) as caught:
        hi(openai_client)

    assert text in caught.value.message


@pytest.mark.parametrize("mode, text", [("blocked_prompt", "Gemini blocked the prompt (SAFETY)"), ("blocked_answer", "Gemini blocked the answer (SAFETY)")])
@pytest.mark.parametrize("is_stream", [False, True], ids=["whole", "stream"])
def test_gemini_safety_blocks_are_clear_errors(openai_client, protocol_upstreams, mode, text, is_stream):
    serve_model("gemini", protocol_upstreams)
    protocol_upstreams["gemini"].set_mode(mode)

    with pytest.raises(openai.BadRequestError) as caught:
        if is_stream:
            list(openai_client.chat.completions.create(model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True))
        else:
            hi(openai_client)

    assert text in caught.value.message


@pytest.mark.parametrize("kind", TRANSLATED)
def test_a_stream_that_breaks_ends_with_an_error_event(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode("stream_error")

    with pytest.raises(openai.APIError) as caught:
        list(openai_client.chat.completions.create(model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True))

    assert "stream broke" in caught.value.message


@pytest.mark.parametrize("kind", TRANSLATED)
def test_a_cut_stream_is_settled_on_what_was_delivered(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)
    protocol_upstreams[kind].set_mode("cut")

    with openai_client.chat.completions.with_streaming_response.create(
        model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = list(response.iter_lines())

    assert any("stream broke" in line for line in lines)
    assert 0 < ledger_charge(request_id) < charge_micros(prompt=30, completion=4)


def test_audio_is_refused_for_anthropic_without_failover(openai_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model="m-test", messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]
        )

    assert "do not take 'input_audio'" in caught.value.message
    assert protocol_upstreams["anthropic"].requests == []


def test_charlie_cannot_use_a_model_his_key_does_not_allow(relay, charlie, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)
    serve_model("gemini", protocol_upstreams, model="other-model")
    limited = make_key(charlie.tenant, allowed_models=["other-model"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=limited.key, max_retries=0)

    with pytest.raises(openai.PermissionDeniedError):
        hi(client)


def test_a_client_that_goes_away_cancels_the_translated_upstream(openai_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)
    protocol_upstreams["anthropic"].set_mode("ok", chunk_delay_s=0.5)

    stream = openai_client.chat.completions.create(model="m-test", messages=[{"role": "user", "content": "hi"}], stream=True)
    next(iter(stream))
    stream.close()

    assert protocol_upstreams["anthropic"].wait_for_disconnects(1)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_a_client_cannot_smuggle_a_native_anthropic_body(relay, alice, protocol_upstreams, path):
    """The relay's slot for an Anthropic client's body is its own: a chat client that fills it
    would have its tiny counted request held and billed while a huge one went upstream."""
    import httpx

    serve_model("anthropic", protocol_upstreams)
    sent_before = len(protocol_upstreams["anthropic"].requests)
    huge = {"model": "x", "max_tokens": 100_000, "messages": [{"role": "user", "content": "word " * 50_000}]}

    answer = httpx.post(
        relay.url + path,
        headers={"authorization": f"Bearer {alice.key}"},
        json={"model": "m-test", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "input": "hi",
              "_anthropic_native": {"body": huge, "beta": ""}},
        timeout=30,
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unsupported_parameter"
    assert answer.json()["error"]["param"] == "_anthropic_native"
    assert len(protocol_upstreams["anthropic"].requests) == sent_before  # nothing went upstream
