"""Idempotency-Key on /v1 POSTs: a retried request reaches the upstream once and is charged
once; a changed body is a 409; a streamed answer replays as the same stream; concurrent
duplicates never go upstream twice. Runs on the database store (embedded pass) and on Redis
(scale pass)."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from tests.conftest import flush_logs, make_channel, make_price
from tests.routing.conftest import serve_model

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def charges_of(tenant) -> list[int]:
    from billing.models import LedgerEntry

    flush_logs()
    return [e.amount_micros for e in LedgerEntry.objects.filter(balance__tenant=tenant, amount_micros__lt=0)]


@pytest.fixture
def served(relay, alice, upstream_factory):
    upstream = upstream_factory(name="idem", chunks=5)
    make_price("gpt-test", "1000", "2000")
    make_channel("idem", upstream.url + "/v1", models=["gpt-test"])
    return upstream


def post(relay, alice, *, key="k-1", body=BODY, header="Idempotency-Key"):
    return httpx.post(relay.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {alice.key}", header: key}, timeout=30)


def test_a_retry_with_the_same_key_is_answered_from_the_first_and_charged_once(relay, alice, served):
    first = post(relay, alice)
    second = post(relay, alice)

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(served.requests) == 1
    assert len(charges_of(alice.tenant)) == 1


def test_the_sdk_header_spelling_x_idempotency_key_works_too(relay, alice, served):
    post(relay, alice, header="X-Idempotency-Key")
    assert post(relay, alice, header="X-Idempotency-Key").headers["idempotent-replayed"] == "true"
    assert len(served.requests) == 1


def test_the_same_key_with_another_body_is_refused(relay, alice, served):
    post(relay, alice)
    other = post(relay, alice, body={**BODY, "messages": [{"role": "user", "content": "something else"}]})

    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.headers["x-should-retry"] == "false"
    assert len(served.requests) == 1


def test_keys_are_per_tenant(relay, alice, bob, served):
    post(relay, alice)
    theirs = post(relay, bob)
    assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
    assert len(served.requests) == 2


def test_concurrent_duplicates_reach_the_upstream_once(relay, alice, upstream_factory):
    served = upstream_factory(name="idem-slow", mode="slow_first_byte", delay_s=0.5)
    make_price("gpt-test", "1000", "2000")
    make_channel("idem-slow", served.url + "/v1", models=["gpt-test"])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(relay, alice, key="same"), range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.text for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert len(served.requests) == 1
    assert len(charges_of(alice.tenant)) == 1


def test_a_streamed_answer_replays_as_the_same_stream(relay, alice, served):
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)

    def stream():
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=BODY["messages"], stream=True, extra_headers={"Idempotency-Key": "stream-1"}
        )
        return raw.headers, [chunk.model_dump() for chunk in raw.parse()]

    first_headers, first = stream()
    second_headers, second = stream()

    assert second == first and len(first) > 3
    assert second_headers["idempotent-replayed"] == "true"
    assert second_headers["content-type"].startswith("text/event-stream")
    assert len(served.requests) == 1
    assert len(charges_of(alice.tenant)) == 1


def test_a_failed_request_does_not_keep_the_key(relay, alice, served):
    refused = post(relay, alice, body={**BODY, "model": "no-such-model"})
    assert refused.status_code == 404
    again = post(relay, alice, body={**BODY, "model": "no-such-model"})
    assert again.status_code == 404 and "idempotent-replayed" not in again.headers


def test_a_key_that_is_too_long_is_a_400(relay, alice, served):
    answer = post(relay, alice, key="x" * 256)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert len(served.requests) == 0


def test_a_reused_key_on_messages_is_an_anthropic_invalid_request_error(anthropic_client, protocol_upstreams):
    import anthropic

    serve_model("openai", protocol_upstreams)
    ask = {"model": "m-test", "max_tokens": 16, "extra_headers": {"Idempotency-Key": "msg-1"}}
    anthropic_client.messages.create(messages=[{"role": "user", "content": "hi"}], **ask)

    with pytest.raises(anthropic.ConflictError) as caught:
        anthropic_client.messages.create(messages=[{"role": "user", "content": "something else"}], **ask)

    assert caught.value.status_code == 409
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert len(protocol_upstreams["openai"].requests) == 1


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Idempotency-Key"])
def test_an_empty_key_is_a_400_not_no_key(relay, alice, served, header):
    answer = post(relay, alice, key="", header=header)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert answer.json()["error"]["param"] == "Idempotency-Key"
    assert len(served.requests) == 0
