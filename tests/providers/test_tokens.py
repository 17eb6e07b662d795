from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from providers import tokens

ROOT = Path(__file__).resolve().parents[2]


def test_it_counts_offline_with_o200k_from_the_wheel(tmp_path):
    script = (
        "from providers import tokens\n"
        "print(tokens.count_text('hello world'), tokens.encoding_name())\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")
    }
    # Any download attempt would go to a dead proxy and fail.
    env.update(
        TIKTOKEN_CACHE_DIR=str(tmp_path),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
    )

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "o200k_base"]
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    assert (tmp_path / hashlib.sha1(url.encode()).hexdigest()).exists()


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
