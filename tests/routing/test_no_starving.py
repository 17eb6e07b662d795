"""No tenant can starve the process (issue 9, item 7): an unaffordable long prompt is refused
before the tokenizer runs, very long prompts are estimated by length, and count_tokens counts
against the key's request rate."""

import anthropic
import httpx
import pytest

from routing.counting import INLINE_MAX_BYTES, prompt_tokens_acount, prompt_tokens_by_length
from providers import tokens
from tests.conftest import make_channel, make_key, make_price, make_tenant


@pytest.fixture
def served(upstream_factory, transactional_db):
    fake = upstream_factory(name="starve", chunks=1)
    make_price("gpt-test", "1", "2")
    make_channel("main", fake.url + "/v1", models=["gpt-test"])
    yield fake
    fake.reset()


def test_a_long_prompt_on_an_empty_account_is_refused_before_counting(relay, served):
    broke = make_key(make_tenant("broke", credit=None, wallet=None))
    prompt = "lorem ipsum " * (INLINE_MAX_BYTES // 4)
    answer = httpx.post(relay.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]},
                        headers={"authorization": f"Bearer {broke.key}"}, timeout=30)
    assert answer.status_code == 402
    assert answer.json()["error"]["message"] == "Insufficient balance: every balance of this account is used up or reserved."
    assert served.requests == []


def test_count_tokens_counts_against_the_keys_rpm(relay, alice, served):
    limited = make_key(alice.tenant, rpm=2)
    client = anthropic.Anthropic(base_url=relay.url, api_key=limited.key, max_retries=0)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        assert client.messages.count_tokens(**body).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.count_tokens(**body)
    assert int(caught.value.response.headers["retry-after"]) >= 1


async def test_a_prompt_above_the_exact_limit_is_estimated_by_length(settings):
    settings.TOKEN_COUNT_EXACT_MAX_BYTES = 50_000
    request = {"model": "m", "messages": [{"role": "user", "content": "word " * 20_000}]}
    assert await prompt_tokens_acount(request, body_size=100_123) == prompt_tokens_by_length(100_123) == 50_062
    # below it: the tokenizer's exact count, whether counted inline or in the pool
    exact = tokens.estimate_request_prompt_tokens(request)
    assert await prompt_tokens_acount(request, body_size=40_000) == exact
    assert await prompt_tokens_acount(request, body_size=1_000) == exact


def test_the_length_estimate_bounds_real_text_from_above():
    for text in ("The quick brown fox jumps over the lazy dog. " * 500, "数据库连接池已满，请稍后再试。" * 300, "x" * 10_000):
        request = {"model": "m", "messages": [{"role": "user", "content": text}]}
        assert prompt_tokens_by_length(len(text.encode())) >= tokens.estimate_request_prompt_tokens(request) - 10
