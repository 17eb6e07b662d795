"""Each documented error reaches the openai SDK as its matching exception, in OpenAI's shape."""

import httpx
import openai
import pytest

from tests.conftest import make_channel, make_key, make_price


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="err", chunks=3)
    yield fake
    fake.reset()


@pytest.fixture
def priced(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    make_channel("main", upstream.url + "/v1", models=[("gpt-test", "gpt-4o-mini")])


def client_for(relay, key):
    return openai.OpenAI(base_url=relay.url + "/v1", api_key=key, max_retries=0)


def ask(client, model="gpt-test", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kwargs)


def test_it_rejects_an_unknown_key_with_401(relay, priced):
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(client_for(relay, "sk-nope"))
    assert caught.value.code == "invalid_api_key"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_it_rejects_a_revoked_key(relay, alice, priced):
    from accounts.models import ApiKey
    from accounts.services import api_key_revoke

    api_key_revoke(key=ApiKey.objects.get(pk=alice.key_id))
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        ask(client_for(relay, alice.key))


def test_it_rejects_an_expired_key(relay, alice, priced):
    from datetime import datetime, timedelta, timezone

    expired = make_key(alice.tenant, expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))
    with pytest.raises(openai.AuthenticationError, match="expired"):
        ask(client_for(relay, expired.key))


def test_it_refuses_a_model_the_key_may_not_use_with_403(relay, alice, priced):
    make_channel("other", "http://127.0.0.1:9/v1", models=["other-model"])
    limited = make_key(alice.tenant, allowed_models=["other-model"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(client_for(relay, limited.key))
    assert caught.value.code == "model_not_allowed"


def test_it_refuses_a_key_used_from_another_address(relay, alice, priced):
    fenced = make_key(alice.tenant, allowed_ips=["10.0.0.0/8"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(client_for(relay, fenced.key))
    assert caught.value.code == "ip_not_allowed"


def test_it_answers_404_for_an_unknown_model(relay, alice, priced):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client_for(relay, alice.key), model="no-such-model")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_it_answers_402_when_the_balance_cannot_cover_the_request(relay, priced, transactional_db):
    from tests.conftest import make_tenant

    poor = make_key(make_tenant("poor", credit=None, wallet=None))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client_for(relay, poor.key))
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_quota"
    assert "Credit" in caught.value.message and "available" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_it_rate_limits_by_rpm_with_retry_after(relay, alice, priced):
    limited = make_key(alice.tenant, rpm=2)
    client = client_for(relay, limited.key)
    ask(client)
    ask(client)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)
    assert caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"


def test_it_refuses_a_body_over_the_limit_with_413(relay, alice, priced, settings):
    settings.REQUEST_MAX_BYTES = 1000
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x" * 2000}])
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_it_answers_503_model_not_priced_without_sending(relay, alice, upstream, transactional_db):
    make_channel("unpriced", upstream.url + "/v1", models=[("unpriced-model", "gpt-4o-mini")])
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client_for(relay, alice.key), model="unpriced-model")
    assert caught.value.status_code == 503 and caught.value.code == "model_not_priced"
    assert upstream.requests == []


def test_it_explains_no_available_channel_per_candidate(relay, alice, upstream, transactional_db):
    from billing.services import group_set
    from channels.services import channel_set_status

    make_price("gpt-test", "1", "2")
    off = make_channel("off", upstream.url + "/v1", models=["gpt-test"])
    channel_set_status(channel=off, is_enabled=False, reason="maintenance")
    group_set(name="vip", ratio="1")
    make_channel("vip-only", upstream.url + "/v1", models=["gpt-test"], groups=["vip"], api_key="sk-hidden-secret")
    with pytest.raises(openai.InternalServerError) as caught:
        ask(client_for(relay, alice.key))
    assert caught.value.status_code == 503 and caught.value.code == "no_available_channel"
    message = caught.value.message
    # The customer reads their own group's candidate in public terms; nothing of other groups,
    # no channel names, no operator notes.
    assert message.endswith("'gpt-test': candidate 1: disabled by the operator.")
    for hidden in ("off", "vip", "maintenance", "sk-hidden-secret", "127.0.0.1"):
        assert hidden not in message
    assert "sk-hidden-secret" not in caught.value.response.text
    # The full story stays in the request log for the operator.
    from observability.models import RequestLog
    from tests.conftest import flush_logs

    flush_logs()
    reasons = {c["channel"]: c["reason"] for c in RequestLog.objects.get().candidates}
    assert reasons == {"off": "disabled (maintenance)", "vip-only": "does not serve group 'default'"}


def test_it_answers_400_for_a_malformed_body(relay, alice, priced):
    response = httpx.post(
        relay.url + "/v1/chat/completions", content=b"{not json", headers={"authorization": f"Bearer {alice.key}"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "The request body is not valid JSON.", "type": "invalid_request_error", "param": None, "code": "invalid_json"}
    }


def test_it_answers_400_for_missing_messages(relay, alice, priced):
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=[])
    assert caught.value.code == "invalid_messages" and caught.value.param == "messages"


def test_it_passes_an_upstream_context_overflow_as_400(relay, alice, priced, upstream):
    upstream.set_mode("context_overflow")
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client_for(relay, alice.key))
    assert caught.value.code == "context_length_exceeded"
    assert len(upstream.requests) == 1  # not retried elsewhere


def test_it_answers_502_when_every_upstream_fails(relay, alice, priced, upstream):
    upstream.set_mode("500")
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client_for(relay, alice.key))
    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert "attempt 1: transient (500)" in caught.value.message
    assert "main" not in caught.value.message  # channel names are the operator's


def test_every_response_has_a_request_id_and_the_relays_overhead(relay, alice, priced):
    for response in (
        httpx.get(relay.url + "/v1/models", headers={"authorization": f"Bearer {alice.key}"}),
        httpx.get(relay.url + "/v1/models"),
        httpx.get(relay.url + "/v1/nowhere", headers={"authorization": f"Bearer {alice.key}"}),
        httpx.post(relay.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]},
                   headers={"authorization": f"Bearer {alice.key}"}),
    ):
        assert response.headers["x-request-id"].startswith("req_"), response.text
        if response.url.path.startswith("/v1/"):
            assert float(response.headers["x-tokenhub-overhead-ms"]) >= 0


def test_it_rate_limits_by_tpm_after_the_tokens_are_counted(relay, alice, priced):
    limited = make_key(alice.tenant, tpm=20)
    client = client_for(relay, limited.key)
    ask(client)  # 12 prompt + 3 completion tokens
    ask(client)  # 15 used < 20: admitted; now 30
    from tests.conftest import settle_background

    settle_background()
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client)
    headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-tokens"] == "20" and headers["x-ratelimit-remaining-tokens"] == "0"
    assert "tokens per minute" in caught.value.message


def test_readyz_checks_the_database(relay_server, transactional_db):
    response = httpx.get(relay_server.url + "/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["database"] == "ok"
    assert httpx.get(relay_server.url + "/healthz").json() == {"status": "ok"}


def _error_classes(base):
    for cls in base.__subclasses__():
        yield cls
        yield from _error_classes(cls)


def test_every_client_error_class_reads_as_the_clients_fault_to_anthropic_clients():
    import routing.idempotency  # noqa: F401  (its 409s are error classes too)
    from routing.errors import TokenHubError

    classes = list(_error_classes(TokenHubError))
    assert any(cls.status == 409 for cls in classes)
    for cls in classes:
        body = cls("message").render_anthropic()
        kind = httpx.Response(cls.status, content=body).json()["error"]["type"]
        if cls.status < 500:
            assert kind != "api_error", cls
        else:
            assert kind in ("api_error", "overloaded_error"), cls


LONG = "m" * 100_000
LONG_PATH = "m" * 5_000  # a URL's whole request line must stay under the server's 16 KiB
HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "method, path, body, headers",
    [
        ("POST", "/v1/chat/completions", {"model": LONG, "messages": HI}, {}),
        ("GET", "/v1/models/" + LONG_PATH, None, {}),
        ("GET", "/v1/models/" + LONG_PATH, None, {"anthropic-version": "2023-06-01"}),
        ("POST", "/v1/messages", {"model": LONG, "max_tokens": 5, "messages": HI}, {}),
        ("POST", "/v1/responses", {"model": "gpt-test", "input": "hi", "previous_response_id": LONG}, {}),
        ("POST", "/v1/chat/completions", {"model": "tokenhub/" + LONG, "messages": HI}, {}),
        ("POST", "/v1/chat/completions", {"model": "tokenhub/vote", "models": [LONG], "messages": HI}, {}),
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "system", "content": f"@tokenhub {LONG}=1"}, *HI]}, {}),
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "system", "content": f"@tokenhub mode={LONG}"}, *HI]}, {}),
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": HI}, {"X-TokenHub-Mode": LONG}),
        ("POST", "/v1/" + LONG_PATH, {}, {}),
    ],
)
def test_a_long_value_from_the_client_is_cut_where_an_error_quotes_it(relay, alice, priced, method, path, body, headers):
    answer = httpx.request(
        method, relay.url + path, json=body, headers={"authorization": f"Bearer {alice.key}", **headers}, timeout=30
    )

    assert 400 <= answer.status_code < 500, answer.text[:300]
    error = answer.json()["error"]
    assert len(error["message"]) < 1_000
    assert "m" * 190 in error["message"] and "m" * 201 not in error["message"] and "…" in error["message"], error["message"]
