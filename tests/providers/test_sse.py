from __future__ import annotations

import random

import pytest
from typing import AsyncIterator

from providers.base import ErrorKind, ProviderError
from providers.sse import SSEDecoder, iter_sse

OPENAI_STREAM = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)
OPENAI_EVENTS = [
    ("message", b'{"choices":[{"delta":{"content":"Hel"}}]}'),
    ("message", b'{"choices":[{"delta":{"content":"lo"}}]}'),
    ("message", b"[DONE]"),
]


def decode(*parts: bytes) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    events = []
    for part in parts:
        events += decoder.feed(part)
    return events + decoder.flush()


def test_it_parses_openai_events_and_skips_comments():
    assert decode(OPENAI_STREAM) == OPENAI_EVENTS


def test_it_gives_the_same_events_split_at_every_byte():
    assert decode(*(OPENAI_STREAM[i : i + 1] for i in range(len(OPENAI_STREAM)))) == OPENAI_EVENTS


def test_it_gives_the_same_events_for_random_splits():
    stream = OPENAI_STREAM.replace(b"\n", b"\r\n") * 5
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 30)))
        parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        assert decode(*parts) == OPENAI_EVENTS * 5


def test_it_accepts_crlf_and_cr_line_endings():
    assert decode(OPENAI_STREAM.replace(b"\n", b"\r\n")) == OPENAI_EVENTS
    assert decode(OPENAI_STREAM.replace(b"\n", b"\r")) == OPENAI_EVENTS


def test_it_joins_a_crlf_split_between_two_reads():
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [("message", b"a"), ("message", b"b")]


def test_it_joins_multi_line_data_with_newlines():
    assert decode(b"data: first\ndata: second\ndata:third\n\n") == [
        ("message", b"first\nsecond\nthird")
    ]


def test_it_reads_event_names():
    stream = (
        b"event: message_start\n"
        b'data: {"type":"message_start"}\n\n'
        b"event: ping\ndata: {}\n\n"
        b"id: 7\nretry: 1000\ndata: plain\n\n"
    )
    assert decode(stream) == [
        ("message_start", b'{"type":"message_start"}'),
        ("ping", b"{}"),
        ("message", b"plain"),
    ]


def test_it_does_not_dispatch_events_without_data():
    assert decode(b"event: ping\n\n: comment only\n\nid: 3\n\n\n\n") == []


def test_it_keeps_a_colon_and_spaces_inside_the_value():
    assert decode(b"data:  two spaces: and a colon\n\n") == [("message", b" two spaces: and a colon")]


def test_it_strips_a_leading_bom():
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [("message", b"x")]


def test_it_dispatches_complete_lines_left_at_the_end():
    assert decode(b"data: a\n\ndata: [DONE]\n") == [("message", b"a"), ("message", b"[DONE]")]


def test_it_drops_a_line_cut_in_the_middle():
    assert decode(b'data: {"a":1}\n\ndata: {"b":') == [("message", b'{"a":1}')]


async def test_iter_sse_reads_an_async_byte_iterator_and_closes_it():
    closed = []

    async def source() -> AsyncIterator[bytes]:
        try:
            for i in range(0, len(OPENAI_STREAM), 7):
                yield OPENAI_STREAM[i : i + 7]
        finally:
            closed.append(True)

    events = iter_sse(source())
    assert await events.__anext__() == OPENAI_EVENTS[0]
    await events.aclose()
    assert closed == [True]
    assert [event async for event in iter_sse(source())] == OPENAI_EVENTS


def test_an_event_that_never_ends_is_refused_at_the_limit():
    decoder = SSEDecoder(max_event_bytes=1024)
    decoder.feed(b"data: " + b"x" * 900)
    with pytest.raises(ProviderError) as caught:
        decoder.feed(b"y" * 200)
    assert caught.value.kind is ErrorKind.TRANSIENT and "larger than 1024 bytes" in caught.value.message


def test_events_under_the_limit_pass_however_many():
    decoder = SSEDecoder(max_event_bytes=64)
    events = decoder.feed(b"data: 1\n\n" * 1000)
    assert len(events) == 1000
