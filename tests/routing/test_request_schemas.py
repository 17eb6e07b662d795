"""Every field is checked before anything is held or sent, on every /v1 endpoint, in that
endpoint's error shape (issue 9, item 5): the reproductions from the issue, each a 400 with a
specific code and param, no request upstream, no hold left, nothing charged."""

import anthropic
import httpx
import openai
import pytest

from tests.conftest import make_channel, make_price, settle_background


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="schemas", chunks=2)
    yield fake
    fake.reset()


@pytest.fixture
def served(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    make_channel("main", upstream.url + "/v1", models=["gpt-test"])
    return upstream


def nothing_happened(upstream) -> None:
    from billing.models import Hold, LedgerEntry

    settle_background()
    assert upstream.requests == []
    assert not Hold.objects.exists()
    assert not LedgerEntry.objects.exclude(idempotency_key__startswith="test:").exists()


def post(relay, key, path, body):
    return httpx.post(relay.url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


USER = [{"role": "user", "content": "hi"}]

OPENAI_CASES = [
    # (path, body, param, code)
    ("/v1/completions", {"model": "gpt-test", "prompt": "x", "max_completion_tokens": "x" * 50}, "max_completion_tokens", "invalid_value"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": [{"type": "text", "text": 12}]}]},
     "messages[0].content[0].text", "invalid_messages"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": [*USER, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "messages[1].tool_calls[0].function.arguments", "invalid_messages"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": USER, "stream": True, "stream_options": "yes"}, "stream_options", "invalid_value"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": USER, "max_completion_tokens": "50"}, "max_completion_tokens", "invalid_value"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": USER, "n": 128}, "n", "invalid_value"),
    ("/v1/chat/completions", {"model": "gpt-test", "messages": USER, "max_tokens": True}, "max_tokens", "invalid_value"),
    ("/v1/chat/completions", {"model": 5, "messages": USER}, "model", "missing_model"),
    ("/v1/completions", {"model": "gpt-test", "prompt": "x", "best_of": 17}, "best_of", "invalid_value"),
    ("/v1/completions", {"model": "gpt-test", "prompt": "x", "stream_options": []}, "stream_options", "invalid_value"),
    ("/v1/embeddings", {"model": "gpt-test", "input": ["a", 3]}, "input[1]", "invalid_input"),
    ("/v1/embeddings", {"model": "gpt-test", "input": "a", "dimensions": "8"}, "dimensions", "invalid_value"),
]


@pytest.mark.parametrize(("path", "body", "param", "code"), OPENAI_CASES, ids=[f"{c[0]}:{c[2]}" for c in OPENAI_CASES])
def test_a_bad_field_is_a_400_naming_it_and_nothing_happens(relay, alice, served, path, body, param, code):
    answer = post(relay, alice.key, path, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert answer.headers["x-should-retry"] == "false"
    nothing_happened(served)


def test_n_up_to_the_configured_maximum_is_accepted_and_beyond_it_refused(relay, alice, served, settings):
    settings.REQUEST_MAX_N = 3
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=USER, n=3)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-test", messages=USER, n=4)
    assert caught.value.param == "n" and "at most 3" in caught.value.message


ANTHROPIC_CASES = [
    ({"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]},
     "messages.0.content.0.text: Input should be a valid string"),
    ({"model": "gpt-test", "max_tokens": 5, "messages": USER, "system": {"text": "be brief"}}, "system: "),
    ({"model": "gpt-test", "max_tokens": 5, "messages": USER, "system": [{"type": "text", "text": ["x"]}]}, "system.0.text: "),
    ({"model": "gpt-test", "max_tokens": "5", "messages": USER}, "max_tokens: Input should be a valid integer"),
    ({"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]},
     "messages.0.content.0.input: "),
]


@pytest.mark.parametrize(("body", "message"), ANTHROPIC_CASES)
def test_a_bad_messages_field_is_a_400_in_anthropics_shape(relay, alice, served, body, message):
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", body=body, cast_to=object)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith(message)
    nothing_happened(served)


def test_count_tokens_checks_its_fields_too(relay, alice, served):
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages/count_tokens", body={"model": "gpt-test", "messages": USER, "system": 3}, cast_to=object)
    assert caught.value.body["error"]["message"].startswith("system: ")


def test_every_body_endpoint_has_a_schema():
    """Built from the routes themselves: a new POST endpoint without a schema fails here."""
    from routing.app import ROUTES
    from routing.schemas import SCHEMAS

    posted = {route.path for route in ROUTES if "POST" in (route.methods or ())}
    endpoints = {"/v1/" + name.replace(".", "/") for name in SCHEMAS}
    assert posted == endpoints
