"""/v1/chat/completions through the official openai SDK, against fake upstreams on loopback."""

import openai
import pytest

from tests.conftest import flush_logs, make_channel, make_price


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="primary", chunks=5)
    yield fake
    fake.reset()


@pytest.fixture
def channel(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    return make_channel("primary", upstream.url + "/v1", models=[("gpt-test", "gpt-4o-mini")], api_key="sk-upstream-secret")


def test_it_answers_a_chat_from_the_upstream(openai_client, channel, upstream):
    answer = openai_client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    completion = answer.parse()
    assert completion.choices[0].message.content == upstream.text
    assert completion.usage.prompt_tokens == 12 and completion.usage.completion_tokens == 5
    assert answer.headers["x-request-id"].startswith("req_")
    assert float(answer.headers["x-tokenhub-overhead-ms"]) >= 0
    sent = upstream.requests[-1]
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"


def test_it_streams_with_usage_when_asked(openai_client, channel, upstream):
    stream = openai_client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == upstream.text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


def test_it_hides_the_usage_chunk_when_not_asked(openai_client, channel, upstream):
    chunks = list(openai_client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}  # still asked upstream, for billing


def test_it_lists_only_the_models_the_key_may_use(relay, alice, channel):
    from tests.conftest import make_key

    make_channel("other", "http://127.0.0.1:9/v1", models=["other-model"])
    limited = make_key(alice.tenant, allowed_models=["gpt-test"])
    everything = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    only = openai.OpenAI(base_url=relay.url + "/v1", api_key=limited.key, max_retries=0)
    assert {m.id for m in everything.models.list()} == {"gpt-test", "other-model"}
    assert [m.id for m in only.models.list()] == ["gpt-test"]


def test_it_logs_the_request(openai_client, channel, alice):
    from observability.models import RequestLog

    openai_client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    flush_logs()
    log = RequestLog.objects.get()
    assert (log.tenant_id, log.model, log.channel_name, log.status) == (alice.tenant.pk, "gpt-test", "primary", 200)
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (12, 5, False)
    assert log.attempts[0]["outcome"] == "ok"
