from __future__ import annotations

import asyncio
import email.utils
import gzip
import socket
import time

import httpx
import orjson
import pytest

from providers.base import Chunk, ErrorKind, ProviderError, Target, Timeouts
from providers.httpkit import MAX_ANSWER_BYTES, classify_error, parse_retry_after
from providers.openai import OpenAIAdapter
from tests.fakes.scripted_upstream import Scripted
from tests.fakes.server import ServerThread
from tests.fakes import FakeOpenAI

adapter = OpenAIAdapter()
SECRET = "sk-test-secret-123"


def chat_request(**overrides) -> dict:
    return {"model": "public-name", "messages": [{"role": "user", "content": "hi"}], **overrides}


async def read_all(stream) -> list[Chunk]:
    chunks = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return chunks


# -- non-streamed -------------------------------------------------------------------------


async def test_chat_returns_the_upstream_body_untouched(client, target, timeouts, upstream):
    result = await adapter.chat(client, target, chat_request(), timeouts)

    assert result.body.startswith(b'{\n  "id": "chatcmpl-fake')  # OpenAI's pretty print kept
    answer = orjson.loads(result.body)
    assert answer["choices"][0]["message"]["content"] == "Hello from fake-a"
    assert result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 5)


async def test_chat_sends_the_upstream_model_and_bearer_key(client, target, timeouts, upstream):
    request = chat_request(stream_options={"include_usage": True})

    await adapter.chat(client, target, request, timeouts)

    seen = upstream.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.json["model"] == "gpt-4o-mini"
    assert "stream_options" not in seen.json
    assert request["model"] == "public-name"  # the caller's dict is not changed


async def test_chat_sends_no_authorization_without_a_key(client, target, timeouts, upstream):
    keyless = Target(target.base_url, target.upstream_model)

    await adapter.chat(client, keyless, chat_request(), timeouts)

    assert "authorization" not in upstream.requests[-1].headers


async def test_chat_reads_cached_tokens(client, target, timeouts, upstream):
    upstream.set_mode("ok", cached_tokens=8)

    result = await adapter.chat(client, target, chat_request(), timeouts)

    assert result.usage.cached_tokens == 8


async def test_chat_without_usage_gives_none(client, target, timeouts, upstream):
    upstream.set_mode("no_usage")

    result = await adapter.chat(client, target, chat_request(), timeouts)

    assert result.usage is None


# -- streamed -----------------------------------------------------------------------------


async def test_stream_yields_chunks_then_the_usage_chunk(client, target, timeouts, upstream):
    stream = await adapter.open_stream(client, target, chat_request(stream=True), timeouts)
    chunks = await read_all(stream)

    assert "".join(chunk.text for chunk in chunks) == "Hello from fake-a"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    *content, last = chunks
    assert last.is_usage_only and (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 5)
    assert not any(c.is_usage_only or c.usage for c in content)
    for chunk in chunks:
        assert chunk.data.startswith(b'data: {"id":"chatcmpl-fake') and chunk.data.endswith(b"}\n\n")
    assert all(b"[DONE]" not in chunk.data for chunk in chunks)


async def test_stream_always_asks_the_upstream_for_usage(client, target, timeouts, upstream):
    request = chat_request(stream=True, stream_options={"continuous_usage_stats": False})

    await read_all(await adapter.open_stream(client, target, request, timeouts))

    sent = upstream.requests[-1].json
    assert sent["stream"] is True
    assert sent["stream_options"] == {"continuous_usage_stats": False, "include_usage": True}
    assert sent["model"] == "gpt-4o-mini"
    assert request["stream_options"] == {"continuous_usage_stats": False}  # caller's dict kept


async def test_stream_reads_cached_tokens(client, target, timeouts, upstream):
    upstream.set_mode("ok", cached_tokens=4)

    chunks = await read_all(await adapter.open_stream(client, target, chat_request(), timeouts))

    assert chunks[-1].usage.cached_tokens == 4


async def test_stream_without_usage_ends_normally(client, target, timeouts, upstream):
    upstream.set_mode("no_usage")

    chunks = await read_all(await adapter.open_stream(client, target, chat_request(), timeouts))

    assert chunks[-1].finish_reason == "stop"
    assert not any(chunk.usage for chunk in chunks)


async def test_stream_returns_the_connection_to_the_pool(client, target, timeouts, upstream):
    for _ in range(3):
        await read_all(await adapter.open_stream(client, target, chat_request(), timeouts))

    assert len({request.client_port for request in upstream.requests}) == 1


async def test_a_cut_stream_raises_transient_after_what_arrived(client, target, timeouts, upstream):
    upstream.set_mode("cut", cut_after=2)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)
    received = []

    with pytest.raises(ProviderError) as caught:
        async for chunk in stream:
            received.append(chunk.text)
    await stream.aclose()

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "".join(received) == "".join(upstream.pieces[:2])


async def test_an_error_event_mid_stream_raises(client, target, timeouts, upstream):
    upstream.set_mode("stream_error", cut_after=2)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)

    with pytest.raises(ProviderError) as caught:
        await read_all(stream)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "server had an error" in caught.value.message


async def test_an_idle_stream_raises_transient(client, target, upstream):
    upstream.set_mode("stall", cut_after=2, stall_s=10)
    timeouts = Timeouts(connect_s=2, first_byte_s=5, idle_s=0.3)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        await read_all(stream)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert "idle" in caught.value.message
    assert 0.25 < time.monotonic() - started < 2
    assert upstream.wait_for_disconnects(1)


async def test_the_idle_limit_does_not_apply_before_the_first_chunk(client, target, upstream):
    upstream.set_mode("slow_first_chunk", delay_s=0.6)
    timeouts = Timeouts(connect_s=2, first_byte_s=5, idle_s=0.2)

    chunks = await read_all(await adapter.open_stream(client, target, chat_request(), timeouts))

    assert chunks[-1].is_usage_only


async def test_a_slow_first_byte_raises_transient(client, target, upstream):
    upstream.set_mode("slow_first_byte", delay_s=5)
    timeouts = Timeouts(connect_s=2, first_byte_s=0.3, idle_s=5)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        await adapter.open_stream(client, target, chat_request(), timeouts)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert time.monotonic() - started < 2
    assert upstream.wait_for_disconnects(1)


async def test_a_slow_first_chunk_counts_against_first_byte(client, target, upstream):
    upstream.set_mode("slow_first_chunk", delay_s=5)
    timeouts = Timeouts(connect_s=2, first_byte_s=0.3, idle_s=5)

    with pytest.raises(ProviderError) as caught:
        await adapter.open_stream(client, target, chat_request(), timeouts)

    assert caught.value.kind is ErrorKind.TRANSIENT


async def test_aclose_cancels_the_upstream_request(client, target, timeouts, upstream):
    upstream.set_mode("ok", chunk_delay_s=0.2)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)
    await stream.__anext__()

    await stream.aclose()

    assert upstream.wait_for_disconnects(1)


async def test_aclose_from_another_task_ends_a_pending_read(client, target, timeouts, upstream):
    upstream.set_mode("ok", chunk_delay_s=0.5)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)
    reader = asyncio.create_task(read_all(stream))
    await asyncio.sleep(0.1)

    await stream.aclose()

    with pytest.raises(ProviderError) as caught:
        await asyncio.wait_for(reader, 3)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert upstream.wait_for_disconnects(1)


async def test_cancelling_the_reader_is_not_mistaken_for_idleness(client, target, upstream):
    upstream.set_mode("ok", chunk_delay_s=1)
    timeouts = Timeouts(connect_s=2, first_byte_s=5, idle_s=5)
    stream = await adapter.open_stream(client, target, chat_request(), timeouts)
    reader = asyncio.create_task(read_all(stream))
    await asyncio.sleep(0.1)

    reader.cancel()

    with pytest.raises(asyncio.CancelledError):
        await reader


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("mode", "kind", "status"),
    [
        ("429", ErrorKind.RATE_LIMITED, 429),
        ("quota", ErrorKind.QUOTA, 429),
        ("500", ErrorKind.TRANSIENT, 500),
        ("401", ErrorKind.AUTH, 401),
        ("400", ErrorKind.BAD_REQUEST, 400),
        ("context_overflow", ErrorKind.CONTEXT_OVERFLOW, 400),
    ],
)
async def test_upstream_errors_are_classified(
    client, target, timeouts, upstream, mode, kind, status, stream
):
    upstream.set_mode(mode)

    with pytest.raises(ProviderError) as caught:
        if stream:
            await adapter.open_stream(client, target, chat_request(), timeouts)
        else:
            await adapter.chat(client, target, chat_request(), timeouts)

    assert (caught.value.kind, caught.value.status) == (kind, status)
    assert SECRET not in caught.value.message and "Bearer" not in caught.value.message
    assert "sk-fake" not in caught.value.message  # the upstream's text about our key


async def test_bad_requests_keep_the_upstreams_reason(client, target, timeouts, upstream):
    upstream.set_mode("400")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(client, target, chat_request(), timeouts)

    assert caught.value.message == "Invalid value for 'temperature': must be between 0 and 2."
    assert caught.value.code == "invalid_value"


async def test_context_overflow_keeps_the_upstreams_reason(client, target, timeouts, upstream):
    upstream.set_mode("context_overflow")

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(client, target, chat_request(), timeouts)

    assert "maximum context length is 128000 tokens" in caught.value.message
    assert caught.value.code == "context_length_exceeded"


async def test_the_mode_can_be_chosen_per_request(client, target, timeouts, upstream):
    with pytest.raises(ProviderError) as caught:
        await adapter.chat(client, Target(target.base_url, "gpt-4o@500"), chat_request(), timeouts)

    assert caught.value.kind is ErrorKind.TRANSIENT
    ok = Target(
        target.base_url, target.upstream_model, options={"extra_headers": {"X-Fake-Mode": "ok"}}
    )
    assert (await adapter.chat(client, ok, chat_request(), timeouts)).finish_reason == "stop"


@pytest.mark.parametrize(
    ("settings", "expected_s"),
    [({"retry_after": "7"}, 7.0), ({"retry_after": None, "retry_after_ms": "1500"}, 1.5)],
)
async def test_429_reads_retry_after(client, target, timeouts, upstream, settings, expected_s):
    upstream.set_mode("429", **settings)

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(client, target, chat_request(), timeouts)

    assert caught.value.retry_after_s == expected_s


async def test_429_reads_retry_after_as_an_http_date(client, target, timeouts, upstream):
    upstream.set_mode("429", retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))

    with pytest.raises(ProviderError) as caught:
        await adapter.open_stream(client, target, chat_request(), timeouts)

    assert 27 <= caught.value.retry_after_s <= 31


def test_retry_after_ms_wins_and_garbage_is_ignored():
    assert parse_retry_after(httpx.Headers({"retry-after": "9", "retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (402, b'{"error": {"message": "Insufficient Balance"}}', ErrorKind.QUOTA),
        (403, b'{"error": {"message": "q", "code": "insufficient_user_quota"}}', ErrorKind.QUOTA),
        (400, b'{"error": {"message": "prompt is too long: 210000 tokens"}}', ErrorKind.CONTEXT_OVERFLOW),
        (404, b'{"error": {"code": "model_not_found", "message": "no model"}}', ErrorKind.BAD_REQUEST),
        (422, b"not json at all", ErrorKind.BAD_REQUEST),
        (408, b"", ErrorKind.TRANSIENT),
        (409, b"", ErrorKind.TRANSIENT),
        (503, b"<html>bad gateway</html>", ErrorKind.TRANSIENT),
        (403, b'{"error": {"message": "key sk-live-abc is blocked"}}', ErrorKind.AUTH),
        # a 400 is about the request: text (or a code) that says quota never blames the account
        (400, b'{"error": {"message": "Invalid value: \'insufficient quota\' for role"}}', ErrorKind.BAD_REQUEST),
        (400, b'{"error": {"message": "x", "code": "insufficient_quota"}}', ErrorKind.BAD_REQUEST),
        (500, b'{"error": {"message": "echo: insufficient balance"}}', ErrorKind.TRANSIENT),
        (500, b'{"error": {"message": "x", "code": "insufficient_user_quota"}}', ErrorKind.QUOTA),
        (None, b'{"error": {"message": "you said insufficient quota"}}', ErrorKind.TRANSIENT),
        (None, b'{"error": {"message": "x", "type": "insufficient_quota"}}', ErrorKind.QUOTA),
        (429, b'{"error": {"message": "You exceeded your current quota"}}', ErrorKind.QUOTA),
        (401, b'{"error": {"message": "Insufficient balance"}}', ErrorKind.QUOTA),
    ],
)
def test_classify_error(status, body, kind):
    error = classify_error(status, body, httpx.Headers({}), "sk-live-abc")

    assert error.kind is kind
    assert "sk-live-abc" not in error.message


def test_long_upstream_messages_are_truncated():
    error = classify_error(400, orjson.dumps({"error": {"message": "x" * 5000}}), None, None)

    assert error.kind is ErrorKind.BAD_REQUEST and len(error.message) == 500


async def test_an_unreachable_upstream_is_transient(client, timeouts):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    target = Target(f"http://127.0.0.1:{closed_port}/v1", "gpt-4o-mini", api_key=SECRET)

    for call in (adapter.chat, adapter.open_stream):
        with pytest.raises(ProviderError) as caught:
            await call(client, target, chat_request(), timeouts)
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert SECRET not in caught.value.message


# -- brands -------------------------------------------------------------------------------


async def test_azure_uses_the_deployment_url_and_api_key_header(
    client, upstream_url, timeouts, upstream
):
    target = Target(
        base_url=upstream_url,
        upstream_model="my-gpt4o",
        api_key=SECRET,
        options={"azure": {"api_version": "2024-10-21"}},
    )

    await adapter.chat(client, target, chat_request(), timeouts)
    await read_all(await adapter.open_stream(client, target, chat_request(), timeouts))

    for seen in upstream.requests:
        assert seen.path == "/openai/deployments/my-gpt4o/chat/completions"
        assert seen.query == "api-version=2024-10-21"
        assert seen.headers["api-key"] == SECRET
        assert "authorization" not in seen.headers


async def test_extra_headers_are_sent(client, target, timeouts, upstream):
    options = {"extra_headers": {"HTTP-Referer": "https://tokenhub.example"}}
    branded = Target(target.base_url, target.upstream_model, target.api_key, options)

    await adapter.chat(client, branded, chat_request(), timeouts)

    assert upstream.requests[-1].headers["http-referer"] == "https://tokenhub.example"


async def test_two_fakes_behave_independently(client, target, timeouts, upstream):
    from tests.fakes import ServerThread

    with ServerThread(FakeOpenAI("429", name="b")) as limited:
        with pytest.raises(ProviderError) as caught:
            await adapter.chat(client, Target(limited.url + "/v1", "m"), chat_request(), timeouts)
        working = await adapter.chat(client, target, chat_request(), timeouts)

    assert caught.value.kind is ErrorKind.RATE_LIMITED
    assert working.finish_reason == "stop"


async def test_a_whole_answer_larger_than_the_limit_is_an_upstream_fault(client, timeouts):
    """A lying upstream cannot fill the relay's memory: reading stops at MAX_ANSWER_BYTES."""

    fake = Scripted()
    fake.answer(200, b'{"choices": [], "pad": "' + b"a" * MAX_ANSWER_BYTES + b'"}')
    with ServerThread(fake) as server:
        with pytest.raises(ProviderError) as caught:
            await adapter.chat(client, Target(server.url + "/v1", "m"), chat_request(), timeouts)
    assert caught.value.kind is ErrorKind.TRANSIENT and "larger than" in caught.value.message


async def test_a_gzipped_whole_answer_is_read_once_and_decoded(client, timeouts):

    body = b'{"id": "x", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
    fake = Scripted()
    fake.answer(200, gzip.compress(body), headers={"content-encoding": "gzip"})
    with ServerThread(fake) as server:
        result = await adapter.chat(client, Target(server.url + "/v1", "m"), chat_request(), timeouts)
    assert result.body == body and result.usage.prompt_tokens == 3
