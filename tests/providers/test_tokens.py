from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import tokens

ROOT = Path(__file__).resolve().parents[2]

# Counts tiktoken 0.14 gave (encode_ordinary) before bpe-openai's tokenizers replaced it
# (docs/decisions/007-one-tokenizer.md): text, o200k_base, cl100k_base.
TIKTOKEN_COUNTS = [
    ("hello world", 2, 2),
    ("<|endoftext|>", 7, 7),
    ("<|endofprompt|> and <|fim_prefix|>", 14, 14),
    ("  \n\n  x", 3, 3),
    ("don't  I'LL we'Ve", 7, 9),
    ("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3092\u6570\u3048\u308b", 9, 12),
    ("\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03ba\u03b1\u03b9 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442", 6, 16),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 125, 125),
    ("                                                                                                    x", 3, 3),
    ("1234567890", 4, 4),
    ("\r\n\r\n\t\t", 2, 2),
    ("emoji \ud83d\udc4d\ud83c\udffd\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 ok", 13, 20),
    ("a\ud800b", 3, 3),
    ("\udfff", 1, 1),
    ("x\ud83d\udc4dy", 3, 5),
    ("def f(x):\n    return x ** 2  # square\n", 14, 14),
    ("{\"city\":\"Paris\",\"days\":[1,2,3]}", 13, 13),
    ("\u00a0\u3000\u200d", 3, 4),
    ("https://example.com/path?q=1&r=2", 11, 11),
    ("\u00c0\u00c9\u00ce\u00d5\u00dc \u00e0\u00e9\u00ee\u00f5\u00fc \u00df", 12, 13),
    ("\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629", 3, 9),
    ("\u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0920", 4, 9),
    ("mixed \uff12\uff10\uff12\uff16\u5e74 full-width", 8, 8),
    ("\u0000\u0001 control", 3, 3),
    ("....!!!???", 3, 3),
    ("   trailing spaces   ", 4, 4),
]


def test_it_counts_offline_from_the_wheel_alone(tmp_path):
    script = (
        "import sys\n"
        "from providers import tokens\n"
        "print(tokens.count_text('hello world'), tokens.encoding_name())\n"
        "print('tiktoken' in sys.modules, 'bpe_openai.compat' in sys.modules)\n"
        "import bpe_openai\n"  # the package, imported after we loaded its compiled module alone
        "print(bpe_openai.get_encoding('o200k_base').encode_ordinary('hello world'))\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SETTINGS_MODULE",)}
    # Any download attempt would go to a dead proxy and fail; the home directory is empty.
    env.update(
        HOME=str(tmp_path),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
    )

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    counted, imported, shared = done.stdout.splitlines()
    assert counted.split() == ["2", "o200k_base"]
    assert imported.split() == ["False", "False"]  # no tiktoken, nor the package's vocabulary dicts
    assert shared == "[24912, 2375]"  # one compiled module serves both
    assert list(tmp_path.iterdir()) == []  # nothing written: no cache to place files in


@pytest.mark.parametrize(("text", "o200k", "cl100k"), TIKTOKEN_COUNTS)
def test_it_counts_what_tiktoken_counted(text, o200k, cl100k):
    assert tokens._counter("o200k_base")(text) == o200k
    assert tokens._counter("cl100k_base")(text) == cl100k


def test_the_loaded_encoding_is_o200k():
    assert tokens.encoding_name() == "o200k_base"
    assert all(tokens.count_text(text) == o200k for text, o200k, _ in TIKTOKEN_COUNTS)


@given(st.text(max_size=300) | st.lists(st.sampled_from(["\ud800", "\udfff", "a", " ", "\n", "👍", "<|endoftext|>"])).map("".join))
def test_any_text_is_counted_never_an_error(text):
    """Lone surrogates included (an API body may carry them as JSON escapes)."""
    count = tokens.count_text(text)
    assert count >= (1 if text else 0)
    assert count == tokens.count_text(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


def test_count_text():
    assert tokens.count_text("hello world") == 2
    assert tokens.count_text("") == 0
    assert tokens.count_text("<|endoftext|>") > 1  # special tokens in text are plain text


def test_count_messages_adds_openais_per_message_overhead():
    # 3 (message) + 1 ("user") + 2 ("hello world") + 3 (reply priming)
    assert tokens.count_messages([{"role": "user", "content": "hello world"}]) == 9
    named = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert tokens.count_messages(named) == 9 + tokens.count_text("bob") + 1


def test_count_messages_reads_content_parts():
    text_only = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    low = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello world"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
            ],
        }
    ]
    default_image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    high = [{"role": "user", "content": [low[0]["content"][0], default_image]}]

    assert tokens.count_messages(text_only) == 9
    assert tokens.count_messages(low) == 9 + 85
    assert tokens.count_messages(high) == 9 + 765


def test_count_messages_counts_tool_calls():
    function = {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    with_call = [{"role": "assistant", "content": None, "tool_calls": [{"function": function}]}]
    without = [{"role": "assistant", "content": None}]

    assert tokens.count_messages(with_call) == tokens.count_messages(without) + tokens.count_text(
        "get_weather"
    ) + tokens.count_text('{"city":"Paris"}')


def test_estimate_request_prompt_tokens_adds_tools():
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]

    assert tokens.estimate_request_prompt_tokens(request) == 9
    assert tokens.estimate_request_prompt_tokens({**request, "tools": tools}) > 9


def test_estimate_request_prompt_tokens_reads_prompt_and_input():
    assert tokens.estimate_request_prompt_tokens({"prompt": "hello world"}) == 2
    assert tokens.estimate_request_prompt_tokens({"input": ["hello world", "hello"]}) == 3
    assert tokens.estimate_request_prompt_tokens({"input": [1, 2, 3]}) == 3
