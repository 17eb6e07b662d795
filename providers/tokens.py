"""Offline token counting, for reservations and for streams whose upstream sent no usage.

tiktoken downloads its encoding files on first use, which fails without internet. The
`bpe-openai` wheel ships the same files (same sha256), so before loading we copy the one we
need into tiktoken's cache directory under the name tiktoken looks for (sha1 of the blob URL)
and point `TIKTOKEN_CACHE_DIR` there. tiktoken still checks the hash when it reads the file.

Order of preference: o200k_base, cl100k_base, then a chars/4 estimate so that counting never
raises. The encoder is loaded once per process, on first use.

These are estimates of what an upstream will bill (OpenAI's per-message overhead; fixed
figures for images); the upstream's reported usage always wins when there is one.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import orjson

__all__ = [
    "count_text",
    "count_messages",
    "estimate_request_prompt_tokens",
    "encoding_name",
]

_ENCODINGS = ("o200k_base", "cl100k_base")
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

_TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|>...<|end|>
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3  # every answer starts with <|start|>assistant<|message|>
_IMAGE_LOW_DETAIL = 85
_IMAGE_DEFAULT = 765  # a 1024x1024 image at high detail: 85 + 4 tiles * 170
_OTHER_PART = 256  # audio/file parts: a placeholder; real usage settles the bill

_lock = threading.Lock()
_count: Callable[[str], int] | None = None
_encoding_name: str | None = None


def count_text(text: str) -> int:
    if not text:
        return 0
    count = _count if _count is not None else _load()
    return count(text)


def count_messages(messages: list[dict]) -> int:
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if key == "content":
                total += _count_content(value)
            elif key == "tool_calls":
                total += _count_tool_calls(value)
            elif key == "name":
                total += count_text(str(value)) + _TOKENS_PER_NAME
            elif isinstance(value, str):  # role, tool_call_id, refusal
                total += count_text(value)
    return total


def estimate_request_prompt_tokens(request: dict) -> int:
    """Prompt tokens of a chat, completions or embeddings request, before sending it."""
    total = 0
    messages = request.get("messages")
    if messages:
        total += count_messages(messages)
    for key in ("prompt", "input"):  # completions / embeddings
        value = request.get(key)
        if value is not None:
            total += _count_prompt(value)
    for key in ("tools", "functions"):
        value = request.get(key)
        if value:
            total += count_text(orjson.dumps(value).decode())
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("json_schema"):
        total += count_text(orjson.dumps(response_format["json_schema"]).decode())
    return total


def encoding_name() -> str:
    """The encoding in use: "o200k_base", "cl100k_base", or "chars/4" when none loaded."""
    if _count is None:
        _load()
    return _encoding_name or "chars/4"


def _count_content(content: Any) -> int:
    if isinstance(content, str):
        return count_text(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count_text(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            total += count_text(part.get("text") or "")
        elif kind == "refusal":
            total += count_text(part.get("refusal") or "")
        elif kind == "image_url":
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, dict) else None
            total += _IMAGE_LOW_DETAIL if detail == "low" else _IMAGE_DEFAULT
        else:
            total += _OTHER_PART
    return total


def _count_tool_calls(tool_calls: Any) -> int:
    total = 0
    for call in tool_calls if isinstance(tool_calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += count_text(function.get("name") or "")
            total += count_text(function.get("arguments") or "")
    return total


def _count_prompt(value: Any) -> int:
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list):
        if value and isinstance(value[0], int):
            return len(value)  # already token ids
        return sum(_count_prompt(item) for item in value)
    return 0


def _estimate_chars(text: str) -> int:
    return (len(text) + 3) // 4


def _load() -> Callable[[str], int]:
    global _count, _encoding_name
    with _lock:
        if _count is not None:
            return _count
        for name in _ENCODINGS:
            try:
                encoding = _load_encoding(name)
            except Exception:  # noqa: BLE001 - any failure means "try the next one"
                continue
            encode = encoding.encode_ordinary  # plain text: special-token strings are text
            _count = lambda text: len(encode(text))  # noqa: E731
            _encoding_name = name
            return _count
        _count = _estimate_chars
        return _count


def _load_encoding(name: str) -> Any:
    import tiktoken  # lazy: importing it costs time that many processes never need

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or _default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    _place_encoding_file(name, cache_dir)
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    return tiktoken.get_encoding(name)


def _place_encoding_file(name: str, cache_dir: str) -> None:
    contents = gzip.decompress(_shipped_file(name).read_bytes())
    url = _BLOB_URL.format(name=name)
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as existing:
            if existing.read() == contents:
                return
    except FileNotFoundError:
        pass
    # Write then rename: another process may be loading the same file right now.
    tmp_path = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp_path, "wb") as out:
        out.write(contents)
    os.replace(tmp_path, path)


def _shipped_file(name: str) -> Path:
    # Found, not imported: importing bpe_openai builds its own tokenizers (~0.4 s).
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the bpe-openai package is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    path = os.path.join(base, "tokenhub", "tiktoken")
    try:
        os.makedirs(path, exist_ok=True)
        return path
    except OSError:
        return os.path.join(tempfile.gettempdir(), "tokenhub-tiktoken")
