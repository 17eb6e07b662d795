"""channels.keys: parsing, fingerprints, sessions and the rendezvous choice (pure functions)."""

import pytest

from channels.keys import MAX_KEYS, key_fingerprint, keys_parse, keys_ranked, keys_text, session_of


def test_keys_are_read_one_a_line_or_from_a_list():
    assert keys_parse("sk-a\r\n\n  sk-b  \nsk-c\n") == ["sk-a", "sk-b", "sk-c"]
    assert keys_parse(["sk-a", "sk-b\nsk-c"]) == ["sk-a", "sk-b", "sk-c"]
    assert keys_parse("") == [] and keys_parse(None) == []
    assert keys_text(keys_parse("sk-a\nsk-b")) == "sk-a\nsk-b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("sk-secret-one\nsk-secret two", "key 2 of 2 has spaces inside"),
        ("sk-secret-one\nsk-secret-two\nsk-secret-one", "key 3 of 3 repeats an earlier key"),
        ("\n".join(f"sk-{i}" for i in range(MAX_KEYS + 1)), f"more than the {MAX_KEYS}"),
    ],
)
def test_bad_key_lists_are_refused_without_quoting_a_key(text, message):
    with pytest.raises(ValueError, match=message) as info:
        keys_parse(text)
    assert "sk-secret" not in str(info.value)


def test_a_fingerprint_is_short_stable_and_not_the_key():
    fp = key_fingerprint("sk-live-abcdef")
    assert fp == key_fingerprint("sk-live-abcdef") and len(fp) == 12 and int(fp, 16) >= 0
    assert fp != key_fingerprint("sk-live-abcdeg") and "sk-" not in fp


def test_a_conversation_keeps_its_session_across_turns():
    turn1 = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]}
    same = session_of(key_id=7, request=turn1, request_id="r1")
    assert session_of(key_id=7, request=turn2, request_id="r2") == same
    assert session_of(key_id=8, request=turn2, request_id="r2") != same  # another API key: another session
    other = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "bonjour"}]}
    assert session_of(key_id=7, request=other, request_id="r3") != same
    # the Responses API's shape, and requests with no conversation (embeddings: by request id)
    assert session_of(key_id=7, request={"instructions": "x", "input": "q"}, request_id="a") == session_of(
        key_id=7, request={"instructions": "x", "input": "q"}, request_id="b"
    )
    assert session_of(key_id=7, request={"model": "e"}, request_id="a") == "r:a"
    assert "hello" not in same  # a hash of the opening, never the text


def test_rendezvous_spreads_sessions_and_moves_only_a_lost_keys_sessions():
    fps = tuple(key_fingerprint(f"sk-{n}") for n in range(3))
    sessions = [f"7:{n}" for n in range(600)]
    firsts = [keys_ranked(fps, s)[0] for s in sessions]
    counts = [firsts.count(i) for i in range(3)]
    assert all(c > 120 for c in counts), counts  # roughly even: 200 each expected
    # key 0 gone: its sessions move, everyone else's stay where they were
    without = fps[1:]
    for session, first in zip(sessions, firsts):
        new_first = keys_ranked(without, session)[0] + 1
        if first != 0:
            assert new_first == first
        else:
            assert new_first == keys_ranked(fps, session)[1]  # its own second choice
