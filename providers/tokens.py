"""Offline token counting, for reservations and for streams whose upstream sent no usage.

One library: bpe-openai's compiled tokenizers, which ship their encoding files inside the
wheel, so nothing is downloaded at run time. They give tiktoken's counts exactly
(docs/decisions/007-one-tokenizer.md); we only count, never encode to ids.

Order of preference: o200k_base, cl100k_base, then a chars/4 estimate so that counting never
raises. The tokenizer is loaded once per process, on first use. Text is counted as plain text:
a special-token string such as "<|endoftext|>" counts as the characters it is made of, and a
lone surrogate as U+FFFD (what tiktoken did).

These are estimates of what an upstream will bill (OpenAI's per-message overhead; fixed
figures for images); the upstream's reported usage always wins when there is one.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import orjson

__all__ = [
    "count_text",
    "count_messages",
    "estimate_request_prompt_tokens",
    "encoding_name",
]

_ENCODINGS = ("o200k_base", "cl100k_base")
_BINDINGS = "bpe_openai._bindings"

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
                count = _counter(name)
            except Exception:  # noqa: BLE001 - any failure means "try the next one"
                continue
            _count = count
            _encoding_name = name
            return _count
        _count = _estimate_chars
        return _count


def _counter(name: str) -> Callable[[str], int]:
    count = _bindings().tokenizer_for_encoding(name).count

    def counted(text: str) -> int:
        try:
            return count(text)
        except UnicodeEncodeError:  # lone surrogates: Rust takes UTF-8 only; tiktoken did the same
            return count(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    counted("warm up")  # fails here, not on a request, if the tokenizer cannot run
    return counted


def _bindings() -> ModuleType:
    """bpe-openai's compiled module, loaded on its own. Importing the package runs its
    `__init__`, which parses every vocabulary it ships into Python dicts for its tiktoken
    look-alike (over a second and tens of MB per process); the compiled tokenizers read the
    same files themselves and need none of that."""
    loaded = sys.modules.get(_BINDINGS)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("bpe_openai")  # found, not imported
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("the bpe-openai package is not installed")
    folder = Path(package.submodule_search_locations[0])
    found = [folder / f"_bindings{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((candidate for candidate in found if candidate.is_file()), None)
    if path is None:  # another build layout: the ordinary import is slower but works
        return importlib.import_module(_BINDINGS)
    loader = importlib.machinery.ExtensionFileLoader(_BINDINGS, str(path))
    spec = importlib.util.spec_from_loader(_BINDINGS, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    # Registered so that a later `import bpe_openai` reuses it: the module initialises once.
    sys.modules[_BINDINGS] = module
    return module
