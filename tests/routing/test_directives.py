"""In-band directives (X-TokenHub-* headers or an @tokenhub line in the system message): each
changes the routing decision as documented, proven against fake upstreams; the line never
reaches the upstream; a key can be forbidden to use them; the request log keeps them."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import flush_logs, make_channel, make_key, make_price

QUESTION = [{"role": "user", "content": "hi"}]


@pytest.fixture
def two_brands(relay, alice, upstream_factory):
    """alpha (priority 10, tried first) and beta (priority 0, the backup) serve gpt-test."""
    alpha = upstream_factory(name="alpha")
    beta = upstream_factory(name="beta")
    make_price("gpt-test", "1", "2")
    make_channel("alpha", alpha.url + "/v1", models=["gpt-test"], brand="alpha", priority=10)
    make_channel("beta", beta.url + "/v1", models=["gpt-test"], brand="beta", priority=0)
    return alpha, beta


def ask(relay, key, *, headers=None, messages=QUESTION, **body):
    return httpx.post(
        relay.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": messages, **body},
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )


def test_without_directives_the_primary_answers(relay, alice, two_brands):
    alpha, beta = two_brands
    assert ask(relay, alice.key).status_code == 200
    assert (len(alpha.requests), len(beta.requests)) == (1, 0)


def test_prefer_brand_puts_that_brand_first(relay, alice, two_brands):
    alpha, beta = two_brands
    assert ask(relay, alice.key, headers={"X-TokenHub-Prefer-Brand": "beta"}).status_code == 200
    assert (len(alpha.requests), len(beta.requests)) == (0, 1)


def test_a_directive_line_steers_and_never_reaches_the_upstream(relay, alice, two_brands):
    alpha, beta = two_brands
    messages = [{"role": "system", "content": "@tokenhub prefer_brand=beta exclude_brand=alpha\nBe brief."}, *QUESTION]

    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=messages)

    assert len(alpha.requests) == 0
    sent = beta.requests[-1].json["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert "@tokenhub" not in beta.requests[-1].body.decode()


def test_a_system_message_holding_only_the_line_is_removed(relay, alice, two_brands):
    _alpha, beta = two_brands
    ask(relay, alice.key, messages=[{"role": "system", "content": "@tokenhub prefer_brand=beta"}, *QUESTION])
    assert beta.requests[-1].json["messages"] == QUESTION


def test_exclude_brand_drops_its_routes_and_says_so_when_none_is_left(relay, alice, two_brands):
    alpha, beta = two_brands
    assert ask(relay, alice.key, headers={"X-TokenHub-Exclude-Brand": "alpha"}).status_code == 200
    assert (len(alpha.requests), len(beta.requests)) == (0, 1)

    refused = ask(relay, alice.key, headers={"X-TokenHub-Exclude-Brand": "alpha, beta"})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_available_channel"
    assert "excluded brand" in refused.json()["error"]["message"]


def test_max_cost_skips_routes_that_could_cost_more_and_refuses_when_none_fits(relay, alice, upstream_factory):
    full = upstream_factory(name="full-price")
    cheap = upstream_factory(name="discounted")
    make_price("gpt-test", "1000", "2000")  # 1,000 output tokens could cost $2 at list price
    make_channel("full", full.url + "/v1", models=["gpt-test"], brand="full", priority=10)
    make_channel("cheap", cheap.url + "/v1", models=["gpt-test"], brand="cheap", priority=0, discount_ratio="0.1")

    fits = ask(relay, alice.key, headers={"X-TokenHub-Max-Cost": "0.5"}, max_tokens=1000)
    assert fits.status_code == 200
    assert (len(full.requests), len(cheap.requests)) == (0, 1)

    refused = ask(relay, alice.key, headers={"X-TokenHub-Max-Cost": "0.01"}, max_tokens=1000)
    assert refused.status_code == 402
    assert "max_cost" in refused.json()["error"]["message"]
    assert (len(full.requests), len(cheap.requests)) == (0, 1)


def test_a_latency_budget_fails_over_from_a_slow_first_byte(relay, alice, upstream_factory):
    slow = upstream_factory(name="slow", mode="slow_first_byte", delay_s=3.0)
    fast = upstream_factory(name="fast")
    make_price("gpt-test", "1", "2")
    make_channel("slow", slow.url + "/v1", models=["gpt-test"], brand="slow", priority=10)
    make_channel("fast", fast.url + "/v1", models=["gpt-test"], brand="fast", priority=0)

    answer = ask(relay, alice.key, headers={"X-TokenHub-Latency-Budget-Ms": "300"})

    assert answer.status_code == 200 and len(fast.requests) == 1
    from observability.models import RequestLog

    flush_logs()
    log = RequestLog.objects.get(request_id=answer.headers["x-request-id"])
    assert [a["outcome"] for a in log.attempts][0] != "ok"
    assert log.directives == {"latency_budget_ms": "300"}


def test_the_mode_directive_is_checked(relay, alice, two_brands):
    bad_line = ask(relay, alice.key, messages=[{"role": "system", "content": "@tokenhub mode=fastest"}, *QUESTION])
    assert bad_line.status_code == 400
    error = bad_line.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_directive", "mode")
    assert "@tokenhub line" in error["message"] and "'fastest'" in error["message"]
    assert ask(relay, alice.key, headers={"X-TokenHub-Mode": "cheap"}).status_code == 200
    alpha, beta = two_brands
    assert len(alpha.requests) + len(beta.requests) == 1  # the good header's request only


def test_a_bad_mode_header_keeps_its_own_code(relay, alice, two_brands):
    bad_header = ask(relay, alice.key, headers={"X-TokenHub-Mode": "fastest"})
    assert bad_header.status_code == 400
    error = bad_header.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_mode", "X-TokenHub-Mode")


def test_a_bad_mode_in_the_line_is_the_lines_even_beside_a_good_header(relay, alice, two_brands):
    answer = ask(
        relay, alice.key, headers={"X-TokenHub-Mode": "cheap"},
        messages=[{"role": "system", "content": "@tokenhub mode=bogus\nBe brief."}, *QUESTION],
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_directive"


@pytest.mark.parametrize(
    "headers, messages",
    [
        ({"X-TokenHub-Colour": "blue"}, QUESTION),
        ({"X-TokenHub-Max-Cost": "free"}, QUESTION),
        ({"X-TokenHub-Max-Cost": "-1"}, QUESTION),
        ({"X-TokenHub-Latency-Budget-Ms": "soon"}, QUESTION),
        ({}, [{"role": "system", "content": "@tokenhub colour=blue"}, *QUESTION]),
        ({}, [{"role": "system", "content": "@tokenhub max_cost"}, *QUESTION]),
        ({}, [{"role": "system", "content": "@tokenhub latency_budget_ms=²"}, *QUESTION]),
        ({}, [{"role": "system", "content": "@tokenhub latency_budget_ms=٣٠٠"}, *QUESTION]),
        ({"X-TokenHub-Latency-Budget-Ms": "²".encode("latin-1")}, QUESTION),
    ],
)
def test_unknown_or_bad_directives_are_refused_and_nothing_is_sent(relay, alice, two_brands, headers, messages):
    alpha, beta = two_brands
    answer = ask(relay, alice.key, headers=headers, messages=messages)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_directive"
    assert len(alpha.requests) + len(beta.requests) == 0


def test_a_key_can_be_forbidden_to_use_directives(relay, alice, two_brands):
    alpha, beta = two_brands
    plain = make_key(alice.tenant, allows_directives=False)

    refused = ask(relay, plain.key, headers={"X-TokenHub-Prefer-Brand": "beta"})
    by_line = ask(relay, plain.key, messages=[{"role": "system", "content": "@tokenhub prefer_brand=beta"}, *QUESTION])

    assert refused.status_code == by_line.status_code == 403
    assert refused.json()["error"]["code"] == "directives_not_allowed"
    assert ask(relay, plain.key).status_code == 200  # without directives it works
    assert (len(alpha.requests), len(beta.requests)) == (1, 0)


def test_the_request_log_keeps_the_directives(relay, alice, two_brands):
    from observability.models import RequestLog

    answer = ask(relay, alice.key, headers={"X-TokenHub-Prefer-Brand": "beta", "X-TokenHub-Mode": "weighted"})
    flush_logs()
    log = RequestLog.objects.get(request_id=answer.headers["x-request-id"])
    assert log.directives == {"prefer_brand": "beta", "mode": "weighted"}

