"""/v1/responses through the official openai SDK (`client.responses`), served by each upstream
protocol: translated to chat and back, whole and streamed, with function tools, images,
previous_response_id, and charged like any request."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import make_key
from tests.routing.conftest import ledger_charge, serve_model
from tests.routing.test_messages_endpoint import PIXEL

KINDS = ["openai", "anthropic", "gemini"]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize("kind", KINDS)
def test_it_answers_a_response_from_each_upstream(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    raw = openai_client.responses.with_raw_response.create(model="m-test", input="hi", instructions="Be brief.")
    response = raw.parse()

    assert response.object == "response" and response.status == "completed"
    assert response.output_text == protocol_upstreams[kind].text
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.output_tokens == 4 and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    request_id = raw.headers["x-request-id"]
    assert ledger_charge(request_id) > 0  # charged like any request, once


@pytest.mark.parametrize("kind", KINDS)
def test_it_streams_response_events_from_each_upstream(openai_client, protocol_upstreams, kind):
    serve_model(kind, protocol_upstreams)

    with openai_client.responses.stream(model="m-test", input=[{"role": "user", "content": "hi"}]) as stream:
        names = [event.type for event in stream]
        final = stream.get_final_response()

    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert "response.output_text.delta" in names and "response.output_item.done" in names
    assert final.output_text == protocol_upstreams[kind].text
    assert final.usage is not None and final.usage.output_tokens == 4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("is_stream", [False, True])
def test_a_function_call_round_trips(openai_client, protocol_upstreams, kind, is_stream):
    serve_model(kind, protocol_upstreams)
    question = [{"role": "user", "content": "Weather in Paris?"}]

    if is_stream:
        with openai_client.responses.stream(model="m-test", input=question, tools=[WEATHER]) as stream:
            names = [event.type for event in stream]
            first = stream.get_final_response()
        assert "response.function_call_arguments.delta" in names or "response.function_call_arguments.done" in names
    else:
        first = openai_client.responses.create(model="m-test", input=question, tools=[WEATHER])

    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    follow_up = question + [
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"},
    ]
    second = openai_client.responses.create(model="m-test", input=follow_up, tools=[WEATHER])
    assert second.status == "completed" and second.output_text


def test_an_image_reaches_the_upstream(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    content = [{"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}]

    openai_client.responses.create(model="m-test", input=[{"role": "user", "content": content}])

    sent = protocol_upstreams["openai"].requests[-1].json["messages"][-1]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}


def test_previous_response_id_continues_the_conversation(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    first = openai_client.responses.create(model="m-test", input="My name is Ada.", instructions="Be kind.")
    second = openai_client.responses.create(model="m-test", input="What is my name?", previous_response_id=first.id)

    sent = protocol_upstreams["openai"].requests[-1].json["messages"]
    # as OpenAI does, the earlier turn's instructions are not carried over
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "My name is Ada." and sent[1]["content"] == protocol_upstreams["openai"].text
    assert second.previous_response_id == first.id


def test_another_tenants_response_id_is_not_found(relay, openai_client, protocol_upstreams, bob):
    serve_model("openai", protocol_upstreams)
    first = openai_client.responses.create(model="m-test", input="secret plans")
    intruder = openai.OpenAI(base_url=relay.url + "/v1", api_key=bob.key, max_retries=0)

    with pytest.raises(openai.BadRequestError) as caught:
        intruder.responses.create(model="m-test", input="and then?", previous_response_id=first.id)

    assert caught.value.body["param"] == "previous_response_id"
    assert caught.value.body["code"] == "previous_response_not_found"


def test_a_response_not_stored_cannot_be_continued(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    first = openai_client.responses.create(model="m-test", input="forget me", store=False)
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.create(model="m-test", input="and then?", previous_response_id=first.id)


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"input": 5}, "input"),
        ({"tools": [{"type": "web_search_preview"}]}, None),
        ({"max_output_tokens": "lots"}, "max_output_tokens"),
        ({"input": [{"role": "user", "content": 3}]}, "input"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_sent(openai_client, protocol_upstreams, overrides, param):
    serve_model("openai", protocol_upstreams)
    sent_before = len(protocol_upstreams["openai"].requests)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(**{"model": "m-test", "input": "hi", **overrides})
    if param:
        assert caught.value.body["param"].startswith(param)
    assert len(protocol_upstreams["openai"].requests) == sent_before


def test_a_key_limited_to_other_models_is_refused(relay, alice, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    from channels.services import model_ensure

    model_ensure(public_id="other")  # a key names catalog models only
    narrow = make_key(alice.tenant, allowed_models=["other"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=narrow.key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.responses.create(model="m-test", input="hi")
