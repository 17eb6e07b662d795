from __future__ import annotations

import time

import orjson
import pytest

from providers import tokens
from providers.base import Chunk, ErrorKind, ProviderError, Target, Timeouts
from providers.simulated import SimulatedAdapter

adapter = SimulatedAdapter()
TARGET = Target(base_url="simulated://", upstream_model="sim-small")
TIMEOUTS = Timeouts(connect_s=1, first_byte_s=5, idle_s=5)


def chat_request(text: str = "What is a relay?", **overrides) -> dict:
    return {"model": "demo", "messages": [{"role": "user", "content": text}], **overrides}


async def stream_all(target: Target, request: dict) -> list[Chunk]:
    stream = await adapter.open_stream(None, target, request, TIMEOUTS)
    try:
        return [chunk async for chunk in stream]
    finally:
        await stream.aclose()


async def test_the_answer_is_an_openai_chat_completion():
    result = await adapter.chat(None, TARGET, chat_request(), TIMEOUTS)

    answer = orjson.loads(result.body)
    assert answer["id"].startswith("chatcmpl-sim")
    assert answer["object"] == "chat.completion" and answer["model"] == "sim-small"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["choices"][0]["finish_reason"] == result.finish_reason == "stop"
    assert answer["usage"]["total_tokens"] == result.usage.total_tokens


async def test_the_same_prompt_gets_the_same_text_and_another_prompt_another():
    first = await adapter.chat(None, TARGET, chat_request("one"), TIMEOUTS)
    again = await adapter.chat(None, TARGET, chat_request("one"), TIMEOUTS)
    other = await adapter.chat(None, TARGET, chat_request("two"), TIMEOUTS)

    def text(result) -> str:
        return orjson.loads(result.body)["choices"][0]["message"]["content"]

    assert text(first) == text(again) != text(other)


async def test_usage_is_counted_like_a_real_upstream():
    request = chat_request()
    result = await adapter.chat(None, TARGET, request, TIMEOUTS)
    text = orjson.loads(result.body)["choices"][0]["message"]["content"]

    assert result.usage.prompt_tokens == tokens.estimate_request_prompt_tokens(request)
    assert result.usage.completion_tokens == tokens.count_text(text) > 0


async def test_max_tokens_cuts_the_answer_with_finish_reason_length():
    result = await adapter.chat(None, TARGET, chat_request(max_tokens=5), TIMEOUTS)

    assert result.finish_reason == "length"
    assert 0 < result.usage.completion_tokens <= 5


async def test_the_stream_says_what_chat_says_then_finishes_and_reports_usage():
    request = chat_request()
    whole = await adapter.chat(None, TARGET, request, TIMEOUTS)
    chunks = await stream_all(TARGET, request)

    *content, finish, usage = chunks
    whole_text = orjson.loads(whole.body)["choices"][0]["message"]["content"]
    assert "".join(c.text for c in content) == whole_text
    assert finish.finish_reason == "stop" and not finish.is_usage_only
    assert usage.is_usage_only and usage.usage == whole.usage
    for chunk in chunks:
        assert chunk.data.startswith(b"data: ") and chunk.data.endswith(b"\n\n")
        event = orjson.loads(chunk.data[6:])
        assert event["object"] == "chat.completion.chunk" and event["model"] == "sim-small"
    assert orjson.loads(usage.data[6:])["choices"] == []


async def test_chunk_delay_paces_the_stream():
    target = Target("simulated://", "sim-small", options={"chunk_delay_ms": 20})
    started = time.monotonic()

    chunks = await stream_all(target, chat_request(max_tokens=6))

    assert time.monotonic() - started >= 0.02 * (len(chunks) - 3)


async def test_cached_tokens_can_be_reported():
    target = Target("simulated://", "sim-small", options={"cached_tokens": 4})

    result = await adapter.chat(None, target, chat_request(), TIMEOUTS)

    assert result.usage.cached_tokens == 4


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("429", ErrorKind.RATE_LIMITED, 429),
        ("500", ErrorKind.TRANSIENT, 500),
        ("timeout", ErrorKind.TRANSIENT, None),
        ("auth", ErrorKind.AUTH, 401),
        ("quota", ErrorKind.QUOTA, 429),
        ("context", ErrorKind.CONTEXT_OVERFLOW, 400),
        ("400", ErrorKind.BAD_REQUEST, 400),
    ],
)
@pytest.mark.parametrize("by", ["options", "marker"])
@pytest.mark.parametrize("stream", [False, True])
async def test_faults_raise_what_the_openai_adapter_would(fault, kind, status, by, stream):
    if by == "options":
        target, request = Target("simulated://", "sim", options={"fault": fault}), chat_request()
    else:
        target, request = TARGET, chat_request(f"please fail [[sim:{fault}]]")

    with pytest.raises(ProviderError) as caught:
        if stream:
            await adapter.open_stream(None, target, request, TIMEOUTS)
        else:
            await adapter.chat(None, target, request, TIMEOUTS)

    assert (caught.value.kind, caught.value.status) == (kind, status)


async def test_429_carries_retry_after():
    target = Target("simulated://", "sim", options={"fault": "429", "retry_after_s": 3})

    with pytest.raises(ProviderError) as caught:
        await adapter.chat(None, target, chat_request(), TIMEOUTS)

    assert caught.value.retry_after_s == 3


async def test_a_cut_stream_breaks_after_a_few_chunks():
    received = []

    with pytest.raises(ProviderError) as caught:
        for chunk in await stream_all(TARGET, chat_request("go [[sim:cut]]")):
            received.append(chunk)

    assert caught.value.kind is ErrorKind.TRANSIENT
    with pytest.raises(ProviderError):
        await adapter.chat(None, TARGET, chat_request("go [[sim:cut]]"), TIMEOUTS)


async def test_a_cut_stream_yields_what_arrived_before_breaking():
    stream = await adapter.open_stream(None, TARGET, chat_request("go [[sim:cut]]"), TIMEOUTS)
    received = []

    with pytest.raises(ProviderError):
        async for chunk in stream:
            received.append(chunk)

    assert len(received) == 4  # the role chunk and three content chunks
    assert not any(chunk.finish_reason for chunk in received)


async def test_slow_delays_the_first_byte_then_answers():
    target = Target("simulated://", "sim", options={"fault": "slow", "slow_ms": 200})
    started = time.monotonic()

    chunks = await stream_all(target, chat_request())

    assert time.monotonic() - started >= 0.2
    assert chunks[-1].is_usage_only


async def test_slow_beyond_first_byte_times_out():
    timeouts = Timeouts(connect_s=1, first_byte_s=0.1, idle_s=5)
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        await adapter.open_stream(None, TARGET, chat_request("[[sim:slow]]"), timeouts)

    assert caught.value.kind is ErrorKind.TRANSIENT
    assert 0.1 <= time.monotonic() - started < 1


async def test_unknown_markers_and_markers_in_old_messages_are_ignored():
    request = {
        "messages": [
            {"role": "user", "content": "[[sim:500]]"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "fine [[sim:nonsense]]"}]},
        ]
    }

    result = await adapter.chat(None, TARGET, request, TIMEOUTS)

    assert result.finish_reason == "stop"


async def test_fault_rate_zero_never_fails():
    target = Target("simulated://", "sim", options={"fault": "500", "fault_rate": 0})

    result = await adapter.chat(None, target, chat_request(), TIMEOUTS)

    assert result.finish_reason == "stop"


@pytest.mark.parametrize("n", [0, 17, "2", True])
async def test_an_impossible_n_is_a_bad_request(n):
    with pytest.raises(ProviderError) as raised:
        await adapter.chat(None, TARGET, chat_request(n=n), TIMEOUTS)
    assert raised.value.kind is ErrorKind.BAD_REQUEST and raised.value.status == 400


async def test_tool_choice_naming_an_unknown_function_is_a_bad_request():
    tools = [{"type": "function", "function": {"name": "known", "parameters": {"type": "object"}}}]
    request = chat_request(tools=tools, tool_choice={"type": "function", "function": {"name": "unknown"}})
    with pytest.raises(ProviderError) as raised:
        await adapter.chat(None, TARGET, request, TIMEOUTS)
    assert raised.value.kind is ErrorKind.BAD_REQUEST


async def test_a_very_deep_schema_still_gets_an_answer():
    node: dict = {"type": "string"}
    for _ in range(40):
        node = {"type": "object", "properties": {"next": node}, "required": ["next"]}
    request = chat_request(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": node}})
    result = await adapter.chat(None, TARGET, request, TIMEOUTS)
    assert isinstance(orjson.loads(orjson.loads(result.body)["choices"][0]["message"]["content"]), dict)
