"""/v1/responses passed through to channels that speak the Responses API (OpenAI's own, or
`options.responses_api: true`), with the official openai SDK as the client: the body and the
events go as they are, charged from the upstream's usage within the usual bounds; failover
crosses between passed-through and translated routes; previous_response_id follows the channel
that holds the response, for its own tenant only."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from billing.models import Hold, LedgerEntry
from billing.services import ledger_audit
from channels.services import channel_update, model_set, options_checked
from channels.health.status import channel_operator_set
from channels.models import Channel
from observability.models import RequestLog
from providers.brands import speaks_responses
from providers.tokens import count_text, estimate_request_prompt_tokens
from providers.translate.responses import to_chat_request
from tests.conftest import flush_logs, make_channel, make_price, settle_background
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import TOOL_ARGUMENTS
from tests.fakes.scripted_upstream import Scripted

MODEL = "m-test"
UPSTREAM_MODEL = "gpt-4o-mini"
UPSTREAM_PROMPT = 12  # what the fake reports as input_tokens
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
STREAM_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
]


def cost(prompt: int, completion: int) -> int:
    """micro-USD at 1000 USD/M in and 2000 USD/M out: 1000 and 2000 micro-USD a token."""
    return prompt * 1000 + completion * 2000


def our_prompt(**native) -> int:
    """The relay's own count of a Responses request's input (the bounds are built on it)."""
    return estimate_request_prompt_tokens(to_chat_request({"model": MODEL, **native})[0])


def charges(request_id: str) -> list[int]:
    flush_logs()
    return [-amount for amount in LedgerEntry.objects.filter(request_id=request_id).values_list("amount_micros", flat=True)]


def passthrough(name: str, fake, *, priority: int = 0, **options):
    make_price(MODEL, "1000", "2000")
    return make_channel(
        name, fake.url + "/v1", models=[(MODEL, UPSTREAM_MODEL)], api_key=f"sk-{name}-upstream-secret-0123456789abcdef",
        priority=priority, options={"responses_api": True, **options},
    )


def translated(name: str, fake, *, priority: int = 0, provider_type: str = "openai"):
    make_price(MODEL, "1000", "2000")
    base_url = fake.url + "/v1" if provider_type == "openai" else fake.url
    upstream_model = UPSTREAM_MODEL if provider_type == "openai" else "claude-sonnet-4-5"
    return make_channel(name, base_url, models=[(MODEL, upstream_model)], provider_type=provider_type,
                        api_key=f"sk-{name}-upstream-secret", priority=priority)


@pytest.fixture(scope="module")
def _anthropic_server(serve_app):
    fake = FakeAnthropic(name="claude", chunks=4)
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def anthropic_fake(_anthropic_server):
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture(scope="module")
def _scripted_server(serve_app):
    fake = Scripted()
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def scripted(_scripted_server):
    _scripted_server.requests.clear()
    return _scripted_server


# --- which channels speak it ------------------------------------------------------------------


@pytest.mark.parametrize(
    "brand, base_url, options, expected",
    [
        ("openai", "https://api.openai.com/v1", {}, True),  # OpenAI's own: on by default
        ("openai", "https://api.openai.com/v1", {"responses_api": False}, False),  # the operator turned it off
        ("openai", "http://127.0.0.1:8000/v1", {}, False),  # compatible servers: off unless declared
        ("deepseek", "https://api.deepseek.com/v1", {}, False),
        ("openai", "https://api.deepseek.com/v1", {}, False),  # the host gives the brand away
        ("vllm", "http://10.0.0.5:8000/v1", {"responses_api": True}, True),
        ("openai", "https://api.openai.com/v1", {"responses_api": "yes"}, True),  # not a boolean: as if unset
        ("azure", "https://x.openai.azure.com", {"responses_api": True}, False),  # never: not its deployment URL
    ],
)
def test_which_channels_speak_the_responses_api(brand, base_url, options, expected):
    assert speaks_responses(brand=brand, base_url=base_url, options=options) is expected


def test_the_option_must_be_a_boolean(transactional_db):
    with pytest.raises(ValueError, match="responses_api must be true or false"):
        options_checked({"responses_api": "true"})
    assert options_checked({"responses_api": False}) == {"responses_api": False}
    with pytest.raises(ValueError, match="responses_api"):
        make_channel("odd", "http://127.0.0.1:9/v1", options={"responses_api": 1})
    assert not Channel.objects.exists()  # refused, nothing made


# --- the body goes as it is, the answer comes back as it is ------------------------------------


def test_a_passthrough_channel_gets_the_responses_body_with_the_upstream_model_and_the_held_limit(openai_client, upstreams):
    fake, = upstreams("pt", chunks=4)
    passthrough("pt", fake)

    raw = openai_client.responses.with_raw_response.create(
        model=MODEL, input="hi", instructions="Be brief.", max_output_tokens=50, metadata={"ticket": "42"}, store=True,
    )
    response = raw.parse()

    sent = fake.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.json["model"] == UPSTREAM_MODEL and sent.json["max_output_tokens"] == 50
    assert sent.json["input"] == "hi" and sent.json["instructions"] == "Be brief." and sent.json["metadata"] == {"ticket": "42"}
    assert sent.json["stream"] is False
    assert response.id == f"resp_fake-pt-{len(fake.requests)}"  # the upstream's own id
    assert response.output_text == fake.text and response.usage.input_tokens == UPSTREAM_PROMPT
    assert charges(raw.headers["x-request-id"]) == [cost(UPSTREAM_PROMPT, 4)]
    assert ledger_audit() == []


def test_a_request_without_a_limit_sends_the_limit_it_held(openai_client, upstreams):
    fake, = upstreams("pt")
    passthrough("pt", fake)
    model_set(public_id=MODEL, max_output=300)

    openai_client.responses.create(model=MODEL, input="hi", extra_body={"max_tokens": 99_999, "n": 3, "max_completion_tokens": 7})

    sent = fake.requests[-1].json
    assert sent["max_output_tokens"] == 300
    assert not {"max_tokens", "n", "max_completion_tokens"} & set(sent)  # never a limit that was not held


def test_a_stream_passes_the_upstreams_events_through_as_they_come(relay, alice, upstreams):
    fake, = upstreams("pt", chunks=4)
    passthrough("pt", fake)

    with httpx.stream("POST", relay.url + "/v1/responses", headers={"authorization": f"Bearer {alice.key}"}, timeout=30,
                      json={"model": MODEL, "input": "hi", "stream": True, "max_output_tokens": 40}) as answer:
        body = answer.read()
        request_id = answer.headers["x-request-id"]

    events = [block for block in body.decode().split("\n\n") if block]
    names = [block.split("\n")[0].removeprefix("event: ") for block in events]
    assert names == STREAM_EVENTS
    datas = [orjson.loads(block.split("\n")[1].removeprefix("data: ")) for block in events]
    assert [d["sequence_number"] for d in datas] == list(range(len(STREAM_EVENTS)))
    assert "".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta") == fake.text
    assert b"[DONE]" not in body and b"chat.completion" not in body  # nothing of the chat journey leaks in
    assert fake.requests[-1].json["stream"] is True and fake.requests[-1].json["max_output_tokens"] == 40
    settle_background()
    assert charges(request_id) == [cost(UPSTREAM_PROMPT, 4)]
    assert ledger_audit() == []


@pytest.mark.parametrize("is_stream", [False, True])
def test_a_function_call_round_trips_through_the_sdk(openai_client, upstreams, is_stream):
    fake, = upstreams("pt", chunks=4)
    passthrough("pt", fake)
    question = [{"role": "user", "content": "Weather in Paris?"}]

    if is_stream:
        with openai_client.responses.stream(model=MODEL, input=question, tools=[WEATHER]) as stream:
            names = [event.type for event in stream]
            first = stream.get_final_response()
        assert "response.function_call_arguments.delta" in names
    else:
        first = openai_client.responses.create(model=MODEL, input=question, tools=[WEATHER])

    assert fake.requests[-1].json["tools"] == [WEATHER]  # Responses' own tool shape, not chat's
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments == TOOL_ARGUMENTS
    follow_up = question + [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
    ]
    second = openai_client.responses.create(model=MODEL, input=follow_up, tools=[WEATHER])
    assert second.output_text == "The tool answered: sunny, 21C"
    assert fake.requests[-1].json["input"][-1]["type"] == "function_call_output"


def test_a_directive_line_never_reaches_the_upstream(openai_client, upstreams):
    fake, = upstreams("pt")
    passthrough("pt", fake)

    openai_client.responses.create(model=MODEL, input="hi", instructions="@tokenhub mode=cheap\nBe brief.")
    assert fake.requests[-1].json["instructions"] == "Be brief."

    developer = [{"role": "developer", "content": "@tokenhub max_cost=100"}, {"role": "user", "content": "hi"}]
    openai_client.responses.create(model=MODEL, input=developer)
    assert fake.requests[-1].json["input"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_123"}, "conversation"),
        ({"prompt": {"id": "pmpt_123"}}, "prompt"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_operator"]}]}, None),
        ({"input": [{"type": "item_reference", "id": "msg_someone_elses"}]}, None),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-operator"}]}]}, None),
    ],
)
def test_work_or_state_the_relay_cannot_bill_or_scope_is_refused_before_anything_is_sent(openai_client, upstreams, extra, param):
    """Built-in tools, stored prompts, conversations, files and item references would reach the
    operator's upstream account (every tenant's); background work could not be billed."""
    fake, = upstreams("pt")
    passthrough("pt", fake)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.responses.create(**{"model": MODEL, "input": "hi", **extra})
    if param:
        assert caught.value.body["param"] == param and caught.value.body["code"] == "unsupported_parameter"
    assert fake.requests == []


# --- charged from the upstream's usage, within the bounds ------------------------------------------


@pytest.mark.parametrize("is_stream", [False, True])
def test_a_lying_usage_report_is_bounded_by_what_was_held(relay, alice, upstreams, is_stream):
    fake, = upstreams("pt", chunks=4)
    passthrough("pt", fake)
    fake.set_mode("ok", usage={"input_tokens": 900_000, "output_tokens": 5_000_000, "total_tokens": 5_900_000})
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 10, "stream": is_stream}

    answer = httpx.post(relay.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {alice.key}"}, timeout=30)
    settle_background()

    assert answer.status_code == 200
    from django.conf import settings

    counted = our_prompt(input="hi", max_output_tokens=10)
    bound = int(counted * settings.USAGE_PROMPT_SLACK_RATIO) + settings.USAGE_PROMPT_SLACK_TOKENS
    assert charges(answer.headers["x-request-id"]) == [min(cost(counted, 10), cost(bound, 10))]  # never above the hold
    log = RequestLog.objects.get(request_id=answer.headers["x-request-id"])
    assert "completion 5000000 > limit sent 10" in log.upstream_discrepancy and "prompt 900000 >" in log.upstream_discrepancy
    assert ledger_audit() == []


@pytest.mark.parametrize("mode", ["cut", "stream_error"])
def test_a_broken_stream_is_charged_from_what_was_delivered_and_ends_with_an_error_event(openai_client, upstreams, mode):
    fake, = upstreams("pt", chunks=6)
    passthrough("pt", fake)
    fake.set_mode(mode, cut_after=3)

    stream = openai_client.responses.create(model=MODEL, input="hi", stream=True)
    events = list(stream)
    request_id = stream.response.headers["x-request-id"]
    settle_background()

    assert events[-1].type == "error" and events[-1].code == "upstream_error"
    assert "response.completed" not in [event.type for event in events]
    delivered = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert delivered == "".join(fake.pieces[:3])
    # no usage report came: the prompt we counted and the text delivered
    assert charges(request_id) == [cost(our_prompt(input="hi", stream=True), count_text(delivered))]
    assert not Hold.objects.filter(status="open").exists()
    assert ledger_audit() == []


def test_an_idle_upstream_stream_is_ended_with_an_error_event(openai_client, upstreams):
    fake, = upstreams("pt", chunks=6)
    channel = passthrough("pt", fake)
    channel.idle_timeout_s = 0.3
    channel.save()
    fake.set_mode("stall", cut_after=2, stall_s=30)

    events = list(openai_client.responses.create(model=MODEL, input="hi", stream=True))

    assert events[-1].type == "error" and "idle" in events[-1].message


# --- failover between the two ways ---------------------------------------------------------------


@pytest.mark.parametrize("is_stream", [False, True])
def test_a_failing_passthrough_channel_fails_over_to_a_translated_one(openai_client, upstreams, is_stream):
    broken, plain = upstreams("broken", "plain", chunks=4)
    passthrough("broken", broken, priority=10)
    translated("plain", plain, priority=0)
    broken.set_mode("500")

    if is_stream:
        with openai_client.responses.stream(model=MODEL, input="hi") as stream:
            list(stream)
            response = stream.get_final_response()
    else:
        response = openai_client.responses.create(model=MODEL, input="hi")

    assert [r.path for r in broken.requests] == ["/v1/responses"]
    assert [r.path for r in plain.requests] == ["/v1/chat/completions"]
    assert response.output_text == plain.text and not response.id.startswith("resp_fake")
    settle_background()
    flush_logs()
    assert LedgerEntry.objects.filter(kind="usage").count() == 1
    assert ledger_audit() == []


@pytest.mark.parametrize("is_stream", [False, True])
def test_a_failing_translated_channel_fails_over_to_a_passthrough_one(openai_client, upstreams, anthropic_fake, is_stream):
    fake, = upstreams("pt", chunks=4)
    translated("claude", anthropic_fake, priority=10, provider_type="anthropic")
    passthrough("pt", fake, priority=0)
    anthropic_fake.set_mode("529")

    if is_stream:
        with openai_client.responses.stream(model=MODEL, input="hi") as stream:
            names = [event.type for event in stream]
            response = stream.get_final_response()
        assert names == STREAM_EVENTS
    else:
        response = openai_client.responses.create(model=MODEL, input="hi")

    assert len(anthropic_fake.requests) == 1
    assert [r.path for r in fake.requests] == ["/v1/responses"]
    assert response.id.startswith("resp_fake-pt-") and response.output_text == fake.text


@pytest.mark.parametrize(
    "answer",
    [
        b'{"detail": "Not Found"}',  # a server that does not really speak it
        b'{"id": "resp_1", "object": "response", "status": "failed", "output": [], '
        b'"error": {"code": "server_error", "message": "The model failed"}}',
    ],
)
def test_an_upstream_answer_that_is_not_a_response_fails_over(openai_client, upstreams, scripted, answer):
    backup, = upstreams("backup", chunks=4)
    passthrough("scripted", scripted, priority=10)
    translated("backup", backup, priority=0)
    scripted.answer(200, answer)

    response = openai_client.responses.create(model=MODEL, input="hi")

    assert len(scripted.requests) == 1 and response.output_text == backup.text


@pytest.mark.parametrize(
    "mode, error, code",
    [
        ("400", openai.BadRequestError, "upstream_bad_request"),
        ("context_overflow", openai.BadRequestError, "context_length_exceeded"),
        ("401", openai.APIStatusError, "upstream_error"),
        ("429", openai.RateLimitError, "rate_limit_exceeded"),
    ],
)
def test_upstream_errors_are_mapped_as_for_chat_without_secrets(openai_client, upstreams, mode, error, code):
    fake, = upstreams("pt")
    passthrough("pt", fake)
    fake.set_mode(mode)

    with pytest.raises(error) as caught:
        openai_client.responses.create(model=MODEL, input="hi")

    assert caught.value.body["code"] == code
    assert "secret" not in caught.value.message and "sk-fake" not in caught.value.message
    assert len(fake.requests) == 1


def test_a_hostile_stream_cannot_forge_events_or_break_the_framing(relay, alice, scripted):
    passthrough("scripted", scripted)
    completed = {"type": "response.completed", "sequence_number": 3, "response": {
        "id": "resp_x", "object": "response", "status": "completed", "output": [],
        "usage": {"input_tokens": 12, "output_tokens": 2, "total_tokens": 14}}}
    stream = b"".join([
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_x"}}\n\n',
        # no event line, and a type that would write one of its own
        b'data: {"type":"response.output_text.delta\\nevent: response.completed","delta":"Hi","sequence_number":1}\n\n',
        # one event in two data lines
        b'data: {"type":"response.output_text.delta",\ndata: "delta":" there","sequence_number":2}\n\n',
        b"event: response.completed\ndata: " + orjson.dumps(completed) + b"\n\n",
    ])
    scripted.answer(200, stream, content_type="text/event-stream")

    with httpx.stream("POST", relay.url + "/v1/responses", headers={"authorization": f"Bearer {alice.key}"}, timeout=30,
                      json={"model": MODEL, "input": "hi", "stream": True}) as answer:
        body = answer.read().decode()

    lines = [line for line in body.split("\n") if line]
    assert all(line.startswith(("event: ", "data: ")) for line in lines)
    assert [line for line in lines if line.startswith("event: ")] == [
        "event: response.created", "event: message", "event: response.output_text.delta", "event: response.completed",
    ]
    datas = [orjson.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert datas[2]["delta"] == " there"


# --- previous_response_id --------------------------------------------------------------------------


def test_a_follow_up_goes_to_the_channel_that_holds_the_response(openai_client, upstreams):
    a, b = upstreams("a", "b", chunks=4)
    channel_a = passthrough("pt-a", a, priority=10)
    channel_b = passthrough("pt-b", b, priority=0)
    first = openai_client.responses.create(model=MODEL, input="My name is Ada.")
    assert first.id.startswith("resp_fake-a-")
    channel_update(channel=channel_a, priority=0)
    channel_update(channel=channel_b, priority=10)  # b is tried first from now on

    second = openai_client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    fresh = openai_client.responses.create(model=MODEL, input="hi")

    assert a.requests[-1].json["previous_response_id"] == first.id  # passed on: the upstream keeps the conversation
    assert second.id.startswith("resp_fake-a-") and second.previous_response_id == first.id
    assert fresh.id.startswith("resp_fake-b-") and "previous_response_id" not in b.requests[-1].json

    channel_operator_set(channel=channel_a, is_enabled=False, reason="maintenance")
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.responses.create(model=MODEL, input="And now?", previous_response_id=second.id)
    assert caught.value.status_code == 503 and caught.value.body["code"] == "no_available_channel"
    assert len(b.requests) == 1  # never sent where the conversation is not


def test_a_follow_up_counts_the_conversation_the_upstream_holds_as_input(openai_client, upstreams):
    fake, = upstreams("pt", chunks=4)
    passthrough("pt", fake)
    long_input = "The quick brown fox jumps over the lazy dog. " * 300
    first = openai_client.responses.create(model=MODEL, input=long_input)
    held_context = our_prompt(input=long_input) + 4  # its input as we counted it, and its output
    fake.set_mode("ok", usage={"input_tokens": held_context + 20, "output_tokens": 4, "total_tokens": held_context + 24})

    raw = openai_client.responses.with_raw_response.create(model=MODEL, input="And then?", previous_response_id=first.id)

    charged = charges(raw.headers["x-request-id"])
    assert charged == [cost(held_context + 20, 4)]  # far above our count of "And then?", and still billed
    assert RequestLog.objects.get(request_id=raw.headers["x-request-id"]).upstream_discrepancy == ""
    assert ledger_audit() == []


def test_another_tenants_response_id_is_refused_and_never_sent_upstream(relay, openai_client, upstreams, bob):
    fake, = upstreams("pt")
    passthrough("pt", fake)
    first = openai_client.responses.create(model=MODEL, input="secret plans")
    intruder = openai.OpenAI(base_url=relay.url + "/v1", api_key=bob.key, max_retries=0)
    sent = len(fake.requests)

    for guessed in (first.id, f"resp_fake-pt-{sent + 1}", "resp_" + "0" * 48):
        with pytest.raises(openai.BadRequestError) as caught:
            intruder.responses.create(model=MODEL, input="and then?", previous_response_id=guessed)
        assert caught.value.body["param"] == "previous_response_id"
        assert caught.value.body["code"] == "previous_response_not_found"
    assert len(fake.requests) == sent


def test_a_response_not_stored_cannot_be_continued(openai_client, upstreams):
    fake, = upstreams("pt")
    passthrough("pt", fake)
    first = openai_client.responses.create(model=MODEL, input="forget me", store=False)
    assert fake.requests[-1].json["store"] is False

    with pytest.raises(openai.BadRequestError):
        openai_client.responses.create(model=MODEL, input="and then?", previous_response_id=first.id)
    assert len(fake.requests) == 1


def test_a_translated_response_is_continued_translated_even_on_a_passthrough_channel(openai_client, upstreams):
    plain, pt = upstreams("plain", "pt", chunks=4)
    plain_channel = translated("plain", plain, priority=10)
    passthrough("pt", pt, priority=0)
    first = openai_client.responses.create(model=MODEL, input="My name is Ada.")
    channel_operator_set(channel=plain_channel, is_enabled=False, reason="maintenance")

    second = openai_client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)

    sent = pt.requests[-1]
    assert sent.path == "/v1/chat/completions"  # the conversation is ours, not the upstream's
    assert [m["role"] for m in sent.json["messages"]] == ["user", "assistant", "user"]
    assert second.previous_response_id == first.id


# --- channels that do not speak it ---------------------------------------------------------------


def test_an_openai_compatible_channel_without_the_option_is_translated_through_chat(openai_client, upstreams):
    fake, = upstreams("plain", chunks=4)
    translated("plain", fake)

    response = openai_client.responses.create(model=MODEL, input="hi", max_output_tokens=30)

    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]
    assert fake.requests[-1].json["max_completion_tokens"] == 30
    assert response.output_text == fake.text and not response.id.startswith("resp_fake")


def test_a_follow_up_on_a_multi_key_channel_goes_to_the_key_whose_account_holds_the_response(openai_client, upstreams):
    """The upstream keeps a response under the account of the key that made it: every turn of a
    conversation chained by previous_response_id uses that key, although each turn's input differs."""
    fake, = upstreams("pool", chunks=4)
    keys = [f"sk-pool-key-{n}-0123456789abcdef" for n in range(4)]
    make_price(MODEL, "1000", "2000")
    make_channel("pool", fake.url + "/v1", models=[(MODEL, UPSTREAM_MODEL)], api_key="\n".join(keys), options={"responses_api": True})

    for opening in ("My name is Ada.", "I live in Paris.", "Count to three.", "Tell me a joke."):
        fake.requests.clear()
        previous = openai_client.responses.create(model=MODEL, input=opening)
        for turn in range(4):
            previous = openai_client.responses.create(model=MODEL, input=f"turn {turn} of {opening}", previous_response_id=previous.id)
        assert len(fake.keys_seen()) == 1, fake.keys_seen()  # one conversation, one upstream account
