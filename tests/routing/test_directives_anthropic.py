"""A directive line in an Anthropic client's system prompt steers like any other and never
reaches an Anthropic channel, which otherwise gets the client's own body untouched."""

from __future__ import annotations

import anthropic
import pytest

from tests.conftest import make_channel, make_price

QUESTION = [{"role": "user", "content": "hi"}]


def test_a_directive_line_in_an_anthropic_system_prompt_never_reaches_an_anthropic_channel(relay, alice, anthropic_upstream):
    make_price("m-test", "1", "2")
    make_channel("claude", anthropic_upstream.url, models=[("m-test", "claude-sonnet-4-5")], provider_type="anthropic", brand="anthropic")
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)

    client.messages.create(model="m-test", max_tokens=64, system="@tokenhub max_cost=1\nBe brief.", messages=QUESTION)

    sent = anthropic_upstream.requests[-1]
    assert "@tokenhub" not in sent.body.decode()
    assert sent.json["system"] == "Be brief."


def test_a_bad_mode_in_an_anthropic_system_line_is_the_lines_invalid_directive(relay, alice, anthropic_upstream):
    make_price("m-test", "1", "2")
    make_channel("claude", anthropic_upstream.url, models=[("m-test", "claude-sonnet-4-5")], provider_type="anthropic", brand="anthropic")
    client = anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0)

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="m-test", max_tokens=64, system="@tokenhub mode=bogus\nBe brief.", messages=QUESTION)

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "@tokenhub line" in caught.value.body["error"]["message"]
    assert "X-TokenHub-Mode" not in caught.value.body["error"]["message"]
    assert anthropic_upstream.requests == []
