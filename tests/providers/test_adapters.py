"""The Anthropic and Gemini adapters against their fakes, error classification tables, and
the OpenAI-compatible brands' quirks."""

from __future__ import annotations

import httpx
import orjson
import pytest

from providers.anthropic import AnthropicAdapter, classify_anthropic_error
from providers.base import NATIVE_ANTHROPIC, ErrorKind, ProviderError, Target, Timeouts
from providers.brands import BRANDS, brand_for, prepare
from providers.gemini import GeminiAdapter, classify_gemini_error
from providers.openai import OpenAIAdapter
from tests.fakes.scripted_upstream import Scripted
from tests.fakes.server import ServerThread

TIMEOUTS = Timeouts(connect_s=2.0, first_byte_s=5.0, idle_s=5.0)
CHAT = {"model": "public", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as client:
        yield client


async def read_all(stream):
    try:
        return [chunk async for chunk in stream]
    finally:
        await stream.aclose()


def error_body(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def google_error(code: int, status: str, message: str, details=()) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status, "details": list(details)}})


# -- Anthropic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (529, error_body("overloaded_error", "Overloaded"), ErrorKind.TRANSIENT),
        (500, error_body("api_error", "Internal server error"), ErrorKind.TRANSIENT),
        (429, error_body("rate_limit_error", "slow down"), ErrorKind.RATE_LIMITED),
        (401, error_body("authentication_error", "invalid x-api-key"), ErrorKind.AUTH),
        (403, error_body("permission_error", "no"), ErrorKind.AUTH),
        (400, error_body("invalid_request_error", "temperature: range: 0..1"), ErrorKind.BAD_REQUEST),
        (404, error_body("not_found_error", "model: x"), ErrorKind.BAD_REQUEST),
        (413, error_body("request_too_large", "Request exceeds the maximum allowed number of bytes."), ErrorKind.BAD_REQUEST),
        (400, error_body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"), ErrorKind.CONTEXT_OVERFLOW),
        (400, error_body("invalid_request_error", "Your credit balance is too low to access the Anthropic API."), ErrorKind.SUSPECTED_QUOTA),  # a 400 never blames the channel: tried elsewhere, not cooled
        (400, error_body("invalid_request_error", "messages.0.role: 'Your credit balance is too low' is not a role"), ErrorKind.BAD_REQUEST),
        (402, error_body("billing_error", "billing issue"), ErrorKind.QUOTA),
        (None, error_body("overloaded_error", "Overloaded"), ErrorKind.TRANSIENT),
    ],
    ids=["529", "500", "429", "401", "403", "400", "404", "413", "context", "credit", "credit-echo", "billing", "in-stream"],
)
def test_anthropic_errors_are_classified(status, body, kind):
    assert classify_anthropic_error(status, body, {"retry-after": "3"}, "sk-key").kind is kind


def test_anthropic_rate_limits_keep_retry_after():
    error = classify_anthropic_error(429, error_body("rate_limit_error", "x"), {"retry-after": "3"}, None)
    assert error.retry_after_s == 3.0


async def test_anthropic_posts_to_v1_messages_with_its_headers(client, anthropic_upstream):
    target = Target(anthropic_upstream.url + "/v1", "claude-up", "sk-ant-secret", {"anthropic_beta": "beta-1"})

    await AnthropicAdapter().chat(client, target, CHAT, TIMEOUTS)

    seen = anthropic_upstream.requests[-1]
    assert seen.path == "/v1/messages"  # a base URL ending in /v1 is tolerated
    assert seen.headers["x-api-key"] == "sk-ant-secret"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "beta-1"
    assert "authorization" not in seen.headers
    assert "stream" not in seen.json


async def test_anthropic_native_streams_are_forwarded_byte_for_byte(client, anthropic_upstream):
    target = Target(anthropic_upstream.url, "claude-up", "k")
    native = {"body": {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}, "beta": ""}

    chunks = await read_all(await AnthropicAdapter().open_stream(client, target, {**CHAT, NATIVE_ANTHROPIC: native}, TIMEOUTS))

    names = [c.data.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for c in chunks]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 + ["content_block_stop", "message_delta", "message_stop"]
    assert "".join(c.text for c in chunks) == anthropic_upstream.text
    assert chunks[-2].finish_reason == "stop" and chunks[-2].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-2])  # usage only with the answer's end


async def test_anthropic_native_drops_unsigned_thinking_only(client, anthropic_upstream):
    target = Target(anthropic_upstream.url, "claude-up", "k")
    signed = {"type": "thinking", "thinking": "a", "signature": "sig"}
    unsigned = {"type": "thinking", "thinking": "b", "signature": ""}
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [signed, unsigned, {"type": "text", "text": "x"}]},
            {"role": "user", "content": "again"},
        ],
    }

    await AnthropicAdapter().chat(client, target, {**CHAT, NATIVE_ANTHROPIC: {"body": body, "beta": ""}}, TIMEOUTS)

    assert anthropic_upstream.requests[-1].json["messages"][1]["content"] == [signed, {"type": "text", "text": "x"}]


@pytest.mark.parametrize("mode, message", [("cut", "without message_stop"), ("stream_error", "upstream error")])
async def test_a_broken_anthropic_stream_raises_transient_after_what_arrived(client, anthropic_upstream, mode, message):
    anthropic_upstream.set_mode(mode)
    stream = await AnthropicAdapter().open_stream(client, Target(anthropic_upstream.url, "c", "k"), CHAT, TIMEOUTS)
    received = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)
    await stream.aclose()

    assert caught.value.kind is ErrorKind.TRANSIENT and message in caught.value.message
    assert "".join(c.text for c in received) == "Hello from fa"


async def test_an_anthropic_error_before_the_stream_is_classified(client, anthropic_upstream):
    anthropic_upstream.set_mode("529")

    with pytest.raises(ProviderError) as caught:
        await AnthropicAdapter().open_stream(client, Target(anthropic_upstream.url, "c", "k"), CHAT, TIMEOUTS)

    assert (caught.value.kind, caught.value.status) == (ErrorKind.TRANSIENT, 529)


async def test_anthropic_lists_models_page_by_page(client, anthropic_upstream):
    anthropic_upstream.set_mode("ok", max_page=2)

    models = await AnthropicAdapter().list_models(client, Target(anthropic_upstream.url, "", "k"), TIMEOUTS)

    assert [m.id for m in models] == ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]
    assert models[0].display_name == "Claude Sonnet 4 5"
    assert len(anthropic_upstream.requests) == 2


# -- Gemini -------------------------------------------------------------------------------------

RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
KEY_INVALID = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (429, google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", [RETRY]), ErrorKind.RATE_LIMITED),
        (400, google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [KEY_INVALID]), ErrorKind.AUTH),
        (403, google_error(403, "PERMISSION_DENIED", "denied"), ErrorKind.AUTH),
        (400, google_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), ErrorKind.AUTH),
        (404, google_error(404, "NOT_FOUND", "models/x is not found"), ErrorKind.BAD_REQUEST),
        (400, google_error(400, "INVALID_ARGUMENT", "Invalid value at 'contents'"), ErrorKind.BAD_REQUEST),
        (400, google_error(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."), ErrorKind.CONTEXT_OVERFLOW),
        (500, google_error(500, "INTERNAL", "An internal error has occurred."), ErrorKind.TRANSIENT),
        (503, google_error(503, "UNAVAILABLE", "The model is overloaded."), ErrorKind.TRANSIENT),
        (None, google_error(503, "UNAVAILABLE", "The model is overloaded."), ErrorKind.TRANSIENT),
        (400, b"[" + google_error(400, "INVALID_ARGUMENT", "API key not valid.") + b"]", ErrorKind.AUTH),
        (502, b"<html>Bad Gateway</html>", ErrorKind.TRANSIENT),
    ],
    ids=["429", "bad-key", "403", "precondition", "404", "400", "context", "500", "503", "in-stream", "listed", "html"],
)
def test_gemini_errors_are_classified(status, body, kind):
    assert classify_gemini_error(status, body, None, "key").kind is kind


def test_gemini_rate_limits_read_retry_info():
    error = classify_gemini_error(429, google_error(429, "RESOURCE_EXHAUSTED", "x", [RETRY]), {"retry-after": "99"}, None)
    assert error.retry_after_s == 17.0


async def test_gemini_posts_to_generate_content_with_its_key_header(client, gemini_upstream):
    target = Target(gemini_upstream.url + "/v1beta", "models/gemini-up", "AIza-secret", {"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})

    await GeminiAdapter().chat(client, target, CHAT, TIMEOUTS)
    await read_all(await GeminiAdapter().open_stream(client, target, CHAT, TIMEOUTS))

    whole, streamed = gemini_upstream.requests[-2:]
    assert whole.path == "/v1beta/models/gemini-up:generateContent"
    assert streamed.path == "/v1beta/models/gemini-up:streamGenerateContent" and streamed.query == "alt=sse"
    assert whole.headers["x-goog-api-key"] == "AIza-secret" and "authorization" not in whole.headers
    assert whole.json["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]


@pytest.mark.parametrize("mode, message", [("cut", "without a finish reason"), ("stream_error", "upstream error")])
async def test_a_broken_gemini_stream_raises_transient_after_what_arrived(client, gemini_upstream, mode, message):
    gemini_upstream.set_mode(mode)
    stream = await GeminiAdapter().open_stream(client, Target(gemini_upstream.url, "g", "k"), CHAT, TIMEOUTS)
    received = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk)
    await stream.aclose()

    assert caught.value.kind is ErrorKind.TRANSIENT and message in caught.value.message
    assert "".join(c.text for c in received) == "Hello from f"


async def test_gemini_lists_generation_and_embedding_models(client, gemini_upstream):
    gemini_upstream.set_mode("ok", max_page=2)

    models = await GeminiAdapter().list_models(client, Target(gemini_upstream.url, "", "k"), TIMEOUTS)

    assert [(m.id, m.kinds) for m in models] == [
        ("gemini-2.5-flash", ("chat",)),
        ("gemini-2.5-pro", ("chat",)),
        ("text-embedding-004", ("embeddings",)),
    ]
    assert (models[0].context_window, models[0].max_output) == (1048576, 65536)


# -- OpenAI-compatible brands -------------------------------------------------------------------


@pytest.mark.parametrize(
    "declared, base_url, brand",
    [
        ("deepseek", "https://proxy.example/v1", "deepseek"),
        ("openai", "https://api.deepseek.com/v1", "deepseek"),
        ("", "https://api.mistral.ai/v1", "mistral"),
        ("openai", "https://api.groq.com/openai/v1", "groq"),
        ("openai", "https://my-res.openai.azure.com", "azure"),
        ("openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen"),
        ("openai", "https://open.bigmodel.cn/api/paas/v4", "glm"),
        ("openai", "https://openrouter.ai/api/v1", "openrouter"),
        ("openai", "http://127.0.0.1:11434/v1", "ollama"),
        ("vllm", "http://10.0.0.5:8000/v1", "vllm"),
        ("openai", "https://api.openai.com/v1", "openai"),
        ("openai", "https://evil-api.deepseek.com.example/v1", "openai"),
    ],
)
def test_the_brand_is_declared_or_guessed_from_the_host(declared, base_url, brand):
    assert brand_for(declared, base_url).name == brand


def test_plain_openai_requests_are_not_touched():
    payload = {"model": "m", "stream_options": {"include_usage": True}, "max_completion_tokens": 5}
    assert prepare(BRANDS["openai"], payload) == {"model": "m", "stream_options": {"include_usage": True}, "max_completion_tokens": 5}


def test_mistral_gets_max_tokens_and_no_stream_options():
    payload = prepare(BRANDS["mistral"], {"model": "m", "stream_options": {"include_usage": True}, "max_completion_tokens": 5})
    assert payload == {"model": "m", "max_tokens": 5}


def test_deepseek_gets_no_reasoning_content_back():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "r"}]
    payload = prepare(BRANDS["deepseek"], {"model": "m", "messages": messages})
    assert payload["messages"][1] == {"role": "assistant", "content": "a"}
    assert messages[1]["reasoning_content"] == "r"  # the caller's request is not changed


async def test_a_mistral_channel_streams_without_stream_options(client, upstream_factory):
    fake = upstream_factory(name="mistral")
    target = Target(fake.url + "/v1", "mistral-small", "k", {}, "mistral")

    await read_all(await OpenAIAdapter().open_stream(client, target, {**CHAT, "max_completion_tokens": 9}, TIMEOUTS))

    sent = fake.requests[-1].json
    assert "stream_options" not in sent and sent["max_tokens"] == 9


async def test_an_azure_brand_uses_the_deployment_url_and_default_api_version(client, upstream_factory):
    fake = upstream_factory(name="azure")
    target = Target(fake.url, "my-deployment", "azure-key", {}, "azure")

    await OpenAIAdapter().chat(client, target, CHAT, TIMEOUTS)

    seen = fake.requests[-1]
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert seen.query == "api-version=2024-10-21"
    assert seen.headers["api-key"] == "azure-key"


@pytest.fixture(scope="module")
def scripted():
    fake = Scripted()
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


async def stream_of(client, scripted, *objects: bytes) -> list:
    """What the OpenAI adapter makes of a stream of these data lines (then [DONE])."""
    body = b"".join(b"data: " + data + b"\n\n" for data in objects) + b"data: [DONE]\n\n"
    scripted.answer(200, body, content_type="text/event-stream")
    target = Target(base_url=scripted.url + "/v1", upstream_model="m", api_key="k")
    return await read_all(await OpenAIAdapter().open_stream(client, target, CHAT, TIMEOUTS))


async def test_groq_stream_usage_is_read_from_x_groq(client, scripted):
    data = orjson.dumps({"choices": [], "x_groq": {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}})
    (chunk,) = await stream_of(client, scripted, data)
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (3, 4)


async def test_reasoning_content_passes_through_and_is_counted(client, scripted):
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}, "finish_reason": None}]})
    (chunk,) = await stream_of(client, scripted, data)
    assert chunk.data == b"data: " + data + b"\n\n" and chunk.text == "think"
