"""The offline demo honours what a newcomer tries first: tools, `n`, `response_format` and the
legacy completions endpoint, streamed and not, with usage, through the relay and the real
`openai` SDK, on a channel of the `simulated` provider."""

import json

import pytest

from billing.models import LedgerEntry
from tests.conftest import flush_logs, make_channel, make_price

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "detail": {"type": "boolean"},
            },
            "required": ["location", "unit", "days"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "filters": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}, "required": ["tags"]}},
            "required": ["query", "filters"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(autouse=True)
def simulated_channel(transactional_db):
    make_price("sim-model", "1", "2")
    return make_channel("sim", "simulated://demo", provider_type="simulated", models=["sim-model"])


def stream_of(client, **request):
    return list(client.chat.completions.create(model="sim-model", stream=True, stream_options={"include_usage": True}, **request))


def test_tools_get_a_call_to_the_first_tool_with_the_required_arguments(openai_client):
    answer = openai_client.chat.completions.create(model="sim-model", messages=ASK, tools=[WEATHER, SEARCH])

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"location", "unit", "days"}
    assert isinstance(arguments["location"], str) and arguments["unit"] == "celsius" and isinstance(arguments["days"], int)
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0


def test_a_streamed_tool_call_arrives_in_pieces_that_join_to_json(openai_client):
    chunks = stream_of(openai_client, messages=ASK, tools=[WEATHER, SEARCH], tool_choice={"type": "function", "function": {"name": "search_docs"}})

    calls = [d.tool_calls[0] for c in chunks if c.choices for d in [c.choices[0].delta] if d.tool_calls]
    assert calls[0].function.name == "search_docs" and calls[0].id
    assert len(calls) > 2  # arguments streamed, not in one piece
    arguments = json.loads("".join(call.function.arguments or "" for call in calls))
    assert isinstance(arguments["query"], str) and isinstance(arguments["filters"]["tags"], list)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_tool_choice_none_and_a_tool_result_get_text(openai_client):
    none = openai_client.chat.completions.create(model="sim-model", messages=ASK, tools=[WEATHER], tool_choice="none")
    first = openai_client.chat.completions.create(model="sim-model", messages=ASK, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    followed = openai_client.chat.completions.create(
        model="sim-model",
        tools=[WEATHER],
        messages=[
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
        ],
    )

    for answer in (none, followed):
        assert answer.choices[0].message.tool_calls is None
        assert answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"


def test_n_gets_n_choices_and_usage_counts_them_all(openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(model="sim-model", messages=ASK, n=3)
    answer = raw.parse()
    one = openai_client.chat.completions.create(model="sim-model", messages=ASK)

    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert len({c.message.content for c in answer.choices}) == 3
    assert answer.choices[0].message.content == one.choices[0].message.content
    assert answer.usage.completion_tokens > one.usage.completion_tokens
    flush_logs()
    charge = -LedgerEntry.objects.get(request_id=raw.headers["x-request-id"]).amount_micros
    assert charge == answer.usage.prompt_tokens * 1 + answer.usage.completion_tokens * 2  # 1 and 2 USD per 1M


def test_n_streamed_gives_every_choice_its_index(openai_client):
    chunks = stream_of(openai_client, messages=ASK, n=2)

    texts: dict[int, str] = {}
    finishes = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(texts) == {0, 1} and all(texts.values()) and texts[0] != texts[1]
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage.completion_tokens > 0


def test_json_object_gets_valid_json_streamed_and_not(openai_client):
    whole = openai_client.chat.completions.create(model="sim-model", messages=ASK, response_format={"type": "json_object"})
    chunks = stream_of(openai_client, messages=ASK, response_format={"type": "json_object"})

    assert isinstance(json.loads(whole.choices[0].message.content), dict)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(streamed) == json.loads(whole.choices[0].message.content)


def test_json_schema_gets_json_with_its_required_properties(openai_client):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "population": {"type": "integer"},
            "area_km2": {"type": "number"},
            "districts": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
            "status": {"type": "string", "enum": ["capital", "town"]},
            "nickname": {"type": "string"},
        },
        "required": ["city", "population", "area_km2", "districts", "status"],
    }
    answer = openai_client.chat.completions.create(
        model="sim-model", messages=ASK, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
    )

    data = json.loads(answer.choices[0].message.content)
    assert set(data) == {"city", "population", "area_km2", "districts", "status"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int) and isinstance(data["area_km2"], (int, float))
    assert data["districts"] and isinstance(data["districts"][0]["name"], str) and data["status"] == "capital"


def test_a_strict_json_schema_gets_every_property(openai_client):
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}, "required": ["a", "b"], "additionalProperties": False}
    chunks = stream_of(
        openai_client, messages=ASK,
        response_format={"type": "json_schema", "json_schema": {"name": "ab", "strict": True, "schema": schema}},
    )

    data = json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert isinstance(data["a"], str) and data["b"] is True


def test_legacy_completions_answer_streamed_and_not_with_usage(openai_client):
    whole = openai_client.completions.create(model="sim-model", prompt="Once upon a time", max_tokens=30, n=2)
    chunks = list(
        openai_client.completions.create(
            model="sim-model", prompt="Once upon a time", max_tokens=30, stream=True, stream_options={"include_usage": True}
        )
    )

    assert whole.object == "text_completion" and [c.index for c in whole.choices] == [0, 1]
    assert all(c.text for c in whole.choices) and whole.usage.completion_tokens > 0
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_legacy_completions_default_to_16_tokens(openai_client):
    answer = openai_client.completions.create(model="sim-model", prompt="Tell me a long story")

    assert answer.usage.completion_tokens <= 16 and answer.choices[0].finish_reason == "length"


def test_claude_clients_get_a_tool_use_block_from_the_demo(relay, alice):
    import anthropic

    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0, timeout=30)
    tool = {"name": WEATHER["function"]["name"], "input_schema": WEATHER["function"]["parameters"]}

    message = client.messages.create(model="sim-model", max_tokens=200, messages=ASK, tools=[tool])

    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and {"location", "unit", "days"} <= set(block.input)
