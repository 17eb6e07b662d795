"""/v1/embeddings (float and base64) and the legacy /v1/completions through the openai SDK."""

from __future__ import annotations

import base64
import struct

import openai
import pytest

from tests.routing.conftest import charge_micros, ledger_charge, serve_model

TEXTS = ["The quick brown fox", "jumps over the lazy dog"]


def fake_tokens(texts: list[str]) -> int:
    return sum(max(1, len(t) // 4) for t in texts)  # what the fake OpenAI upstream reports


def floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_it_answers_float_embeddings(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    raw = openai_client.embeddings.with_raw_response.create(model="m-test", input=TEXTS, encoding_format="float")
    answer = raw.parse()

    assert [item.index for item in answer.data] == [0, 1]
    assert len(answer.data[0].embedding) == 8 and all(isinstance(x, float) for x in answer.data[0].embedding)
    assert answer.usage.prompt_tokens == fake_tokens(TEXTS)
    sent = protocol_upstreams["openai"].requests[-1]
    assert sent.path == "/v1/embeddings" and sent.json["model"] == "gpt-4o-mini"
    assert ledger_charge(raw.headers["x-request-id"]) == charge_micros(prompt=fake_tokens(TEXTS), completion=0)


def test_it_passes_base64_embeddings_through(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    as_floats = openai_client.embeddings.create(model="m-test", input="hello", encoding_format="float").data[0].embedding

    raw = openai_client.embeddings.with_raw_response.create(model="m-test", input="hello", encoding_format="base64")

    assert protocol_upstreams["openai"].requests[-1].json["encoding_format"] == "base64"
    assert floats(raw.http_response.json()["data"][0]["embedding"]) == pytest.approx(as_floats, rel=1e-6)


def test_the_sdk_default_base64_decodes_to_the_same_vector(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)
    as_floats = openai_client.embeddings.create(model="m-test", input="hello", encoding_format="float").data[0].embedding

    by_default = openai_client.embeddings.create(model="m-test", input="hello").data[0].embedding

    assert by_default == pytest.approx(as_floats, rel=1e-6)


def test_base64_is_encoded_here_for_upstreams_that_only_send_floats(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams, options={"embeddings_base64": False})

    raw = openai_client.embeddings.with_raw_response.create(model="m-test", input="hello", encoding_format="base64")

    assert protocol_upstreams["openai"].requests[-1].json["encoding_format"] == "float"
    assert len(floats(raw.http_response.json()["data"][0]["embedding"])) == 8


def test_gemini_serves_embeddings_counted_here(openai_client, protocol_upstreams):
    serve_model("gemini", protocol_upstreams)

    raw = openai_client.embeddings.with_raw_response.create(model="m-test", input=TEXTS, encoding_format="float", dimensions=3)
    answer = raw.parse()

    assert [len(item.embedding) for item in answer.data] == [3, 3]
    sent = protocol_upstreams["gemini"].requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    assert sent.json["requests"][1] == {"model": "models/gemini-2.5-flash", "outputDimensionality": 3, "content": {"parts": [{"text": TEXTS[1]}]}}
    assert ledger_charge(raw.headers["x-request-id"]) > 0  # Gemini reports no usage: counted offline


def test_a_model_served_only_by_anthropic_has_no_embeddings(openai_client, protocol_upstreams):
    serve_model("anthropic", protocol_upstreams)

    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.embeddings.create(model="m-test", input="hello")

    assert caught.value.status_code == 503
    assert caught.value.code == "no_available_channel"
    assert "can answer embeddings" in caught.value.message


def test_bad_embedding_input_is_a_400(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model="m-test", input=[])

    assert caught.value.code == "invalid_input"


def test_an_embedding_upstream_failure_fails_over(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams, priority=10)
    serve_model("gemini", protocol_upstreams, name="backup")
    protocol_upstreams["openai"].set_mode("500")

    answer = openai_client.embeddings.create(model="m-test", input="hello", encoding_format="float")

    assert len(answer.data[0].embedding) == 4  # the Gemini fake's size


# -- legacy completions ---------------------------------------------------------------------


def test_it_answers_a_legacy_completion(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    raw = openai_client.completions.with_raw_response.create(model="m-test", prompt="Say hello", max_tokens=20)
    completion = raw.parse()

    assert completion.choices[0].text == protocol_upstreams["openai"].text
    assert protocol_upstreams["openai"].requests[-1].path == "/v1/completions"
    assert ledger_charge(raw.headers["x-request-id"]) == charge_micros(prompt=12, completion=4)


def test_a_legacy_completion_is_sent_the_limit_it_held_as_max_tokens(openai_client, protocol_upstreams):
    """Without a limit a legacy completion holds and sends OpenAI's default for the endpoint,
    16 tokens, in the one field completions know; a non-integer limit (never multiplied by a
    price) is refused before anything is held or sent."""
    import openai

    serve_model("openai", protocol_upstreams)

    openai_client.completions.create(model="m-test", prompt="Say hello")
    sent = protocol_upstreams["openai"].requests[-1].json
    assert sent["max_tokens"] == 16 and "max_completion_tokens" not in sent

    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model="m-test", prompt="Say hello", extra_body={"max_completion_tokens": "x" * 50})
    assert caught.value.body["param"] == "max_completion_tokens"
    assert len(protocol_upstreams["openai"].requests) == 1


def test_it_streams_a_legacy_completion(openai_client, protocol_upstreams):
    serve_model("openai", protocol_upstreams)

    raw = openai_client.completions.with_raw_response.create(
        model="m-test", prompt="Say hello", stream=True, stream_options={"include_usage": True}
    )
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())

    assert "".join(c.choices[0].text for c in chunks if c.choices) == protocol_upstreams["openai"].text
    assert chunks[-1].usage.completion_tokens == 4
    assert ledger_charge(request_id) == charge_micros(prompt=12, completion=4)


def test_legacy_completions_need_an_openai_compatible_channel(openai_client, protocol_upstreams):
    serve_model("gemini", protocol_upstreams)

    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.completions.create(model="m-test", prompt="hi")

    assert caught.value.status_code == 503 and "can answer completions" in caught.value.message
