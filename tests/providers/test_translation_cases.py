"""Translation tables: every row of tests/providers/cases/*.json is one test named after the
field it checks, so a field that stops being translated fails by name."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import orjson
import pytest

from providers.base import ProviderError, Usage
from providers.translate import anthropic, gemini

CASES = Path(__file__).parent / "cases"
ABSENT = "<absent>"
_MISSING = object()


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text())


def rows(name: str):
    table = load(name)
    return [pytest.param(table.get("base"), row, id=row["name"]) for row in table["rows"]]


def at(obj, path: str):
    """The value at a dotted path ('messages.0.content'); _MISSING when it is not there."""
    for part in path.split("."):
        if isinstance(obj, list):
            index = int(part)
            if index >= len(obj):
                return _MISSING
            obj = obj[index]
        elif isinstance(obj, dict):
            if part not in obj:
                return _MISSING
            obj = obj[part]
        else:
            return _MISSING
    return obj


def check(actual: dict, expect: dict) -> None:
    for path, wanted in expect.items():
        found = at(actual, path)
        if wanted == ABSENT:
            assert found is _MISSING, f"{path} should be absent, is {found!r}"
        else:
            assert found is not _MISSING, f"{path} is missing"
            assert found == wanted, f"{path}: {found!r} != {wanted!r}"


def merged(base: dict | None, row_value: dict) -> dict:
    return {**(base or {}), **row_value}


@pytest.mark.parametrize("base, row", rows("openai_to_anthropic_request"))
def test_openai_request_to_anthropic(base, row):
    request = merged(base, row["request"])
    if "raises" in row:
        with pytest.raises(ProviderError, match=row["raises"]):
            anthropic.to_messages_request(request, "claude-up")
        return
    check(anthropic.to_messages_request(request, "claude-up"), row["expect"])


@pytest.mark.parametrize("base, row", rows("anthropic_to_openai_response"))
def test_anthropic_message_to_openai(base, row):
    completion, usage, finish = anthropic.from_message(merged(base, row["message"]))
    check(completion, row["expect"])
    assert finish == completion["choices"][0]["finish_reason"]
    if "usage" in row:
        assert asdict(usage) == row["usage"]


@pytest.mark.parametrize("base, row", rows("anthropic_request_to_openai"))
def test_anthropic_request_to_openai(base, row):
    body = merged(base, row["body"])
    if "raises" in row:
        with pytest.raises(ProviderError, match=row["raises"]):
            anthropic.from_messages_request(body)
        return
    check(anthropic.from_messages_request(body), row["expect"])


@pytest.mark.parametrize("base, row", rows("openai_to_anthropic_response"))
def test_openai_completion_to_anthropic(base, row):
    usage = Usage(**row["usage"]) if "usage" in row else None
    message = anthropic.to_message(merged(base, row["completion"]), model="m", message_id="msg_test", usage=usage)
    check(message, row["expect"])


def check_deltas(chunks: list[dict], expected: list) -> None:
    assert len(chunks) == len(expected), [c["choices"] for c in chunks]
    for chunk, wanted in zip(chunks, expected):
        if wanted == "usage":
            assert chunk["choices"] == [] and "usage" in chunk
            continue
        delta, finish = wanted
        choice = chunk["choices"][0]
        if isinstance(delta, str):  # "tool_call <name> <arguments>": the id is made up
            _, name, arguments = delta.split(" ", 2)
            call = choice["delta"]["tool_calls"][0]
            assert (call["function"]["name"], call["function"]["arguments"], call["index"]) == (name, arguments, 0)
            assert call["id"].startswith("call_")
        else:
            assert choice["delta"] == delta
        assert choice["finish_reason"] == finish


@pytest.mark.parametrize("base, row", rows("anthropic_stream_to_openai"))
def test_anthropic_events_to_openai_chunks(base, row):
    state = anthropic.MessageEvents()
    chunks = [obj for name, event in row["events"] for obj, _text in state.feed(name, event)]
    check_deltas(chunks, row["deltas"])
    assert state.is_done
    assert asdict(state.usage) == row["usage"]


@pytest.mark.parametrize("base, row", rows("openai_stream_to_anthropic"))
def test_openai_chunks_to_anthropic_events(base, row):
    state = anthropic.ChunkEvents(message_id="msg_test", model="m")
    out = b"".join(state.feed(chunk) for chunk in row["chunks"]) + state.finish(Usage(**row["finish"]))
    events = []
    for block in out.strip().split(b"\n\n"):
        name_line, data_line = block.split(b"\n")
        name = name_line.removeprefix(b"event: ").decode()
        data = orjson.loads(data_line.removeprefix(b"data: "))
        assert data["type"] == name
        events.append((name, data))
    assert [name for name, _ in events] == [name for name, _ in row["events"]]
    for (_, data), (_, fields) in zip(events, row["events"]):
        check(data, fields)


@pytest.mark.parametrize("base, row", rows("openai_to_gemini_request"))
def test_openai_request_to_gemini(base, row):
    request = merged(base, row["request"])
    if "raises" in row:
        with pytest.raises(ProviderError, match=row["raises"]):
            gemini.to_generate_request(request)
        return
    check(gemini.to_generate_request(request), row["expect"])


@pytest.mark.parametrize("base, row", rows("gemini_to_openai_response"))
def test_gemini_response_to_openai(base, row):
    response = merged(base, row["response"])
    if "raises" in row:
        with pytest.raises(ProviderError, match=row["raises"].replace("(", r"\(").replace(")", r"\)")):
            gemini.from_response(response)
        return
    completion, usage, finish = gemini.from_response(response)
    check(completion, row["expect"])
    if "usage" in row:
        assert asdict(usage) == row["usage"]


@pytest.mark.parametrize("base, row", rows("gemini_stream_to_openai"))
def test_gemini_stream_to_openai_chunks(base, row):
    state = gemini.ResponseEvents()
    if "raises" in row:
        with pytest.raises(ProviderError, match=row["raises"].replace("(", r"\(").replace(")", r"\)")):
            for response in row["responses"]:
                state.feed(response)
        return
    chunks = [obj for response in row["responses"] for obj, _text in state.feed(response)]
    chunks.append(state.end())
    check_deltas(chunks, row["deltas"])
    assert asdict(state.usage) == row["usage"]


def test_a_gemini_signature_survives_the_tool_call_id():
    signature = "CiQBH8+YbfakeSignature/with+base64=="
    call_id = gemini.tool_call_id(signature)

    assert all(c.isalnum() or c in "_-" for c in call_id)
    assert gemini.signature_from_call({"id": call_id}) == signature


def test_every_case_file_is_exercised():
    used = {
        "openai_to_anthropic_request",
        "anthropic_to_openai_response",
        "anthropic_request_to_openai",
        "openai_to_anthropic_response",
        "anthropic_stream_to_openai",
        "openai_stream_to_anthropic",
        "openai_to_gemini_request",
        "gemini_to_openai_response",
        "gemini_stream_to_openai",
    }
    assert {path.stem for path in CASES.glob("*.json")} == used
