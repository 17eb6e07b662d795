"""A pretend upstream, no network: demo channels, offline runs, failover drills.

Answers are OpenAI-shaped and deterministic: the text is pseudo-lorem seeded by a hash of
the messages, at most `max_tokens` (or `max_completion_tokens`) long, finish reason "length"
when cut there. Usage is counted with `providers.tokens`, as a real upstream would report it.

It honours what a newcomer tries first, so the offline demo does not look broken:
    tools            a call to the named tool (`tool_choice`) or the first one, its arguments
                     JSON filling the parameter schema's required properties; finish reason
                     "tool_calls". `tool_choice: "none"` answers text; so does "auto" (or no
                     tool_choice) once the last message is a tool result, as a model would.
    n                n choices (1..MAX_N), each its own text; usage counts them all.
    response_format  `json_object`: a JSON object; `json_schema`: JSON filling the schema's
                     required properties (all of them when `strict`).
    completions      legacy `/v1/completions` (`prompt`, `n`, `max_tokens`, default 16).

`Target.options`:
    chunk_delay_ms   pause between stream chunks (default 0)
    fault            one of FAULTS below, for every request
    fault_rate       probability that `fault` applies (default 1.0), for flaky-channel demos
    slow_ms          first-byte delay of the "slow" fault (default 2000)
    retry_after_s    Retry-After of the "429" fault (default 1.0)
    cached_tokens    prompt tokens reported as read from a cache (default 0)
    embedding_dims   length of an embedding vector (default 256)

A fault can also be asked for per request by a marker in the last user message, e.g.
`[[sim:429]]`. Faults raise the same `ProviderError`s the openai adapter raises.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import random
import re
import time
import uuid
from typing import AsyncIterator

import httpx
import orjson

from providers import tokens
from providers.base import ChatResult, Chunk, EmbeddingResult, ErrorKind, ProviderError, Target, Timeouts, Usage

__all__ = ["SimulatedAdapter", "FAULTS", "MAX_N"]

FAULTS = frozenset({"429", "500", "timeout", "cut", "auth", "quota", "context", "400", "slow"})
_MARKER = re.compile(r"\[\[sim:([a-z0-9_]+)\]\]")
_CUT_AFTER_CHUNKS = 3
_FINGERPRINT = "fp_simulated"
_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua relay token stream answer model channel route balance "
    "request upstream latency prompt cache window chunk signal quiet river stone light "
    "garden paper window morning simple clear steady"
).split()


class SimulatedAdapter:
    name = "simulated"

    async def chat(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        answer = await _answer_or_raise(target, request, timeouts, kind="chat")
        body = {
            "id": answer.id,
            "object": "chat.completion",
            "created": answer.created,
            "model": target.upstream_model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [_message_choice(choice) for choice in answer.choices],
            "usage": _usage_json(answer.usage),
        }
        return ChatResult(orjson.dumps(body), answer.usage, answer.finish_reason)

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> SimulatedStream:
        fault = _fault(target, request)
        await _raise_fault_before_first_byte(fault, target, timeouts)
        delay_s = float(target.options.get("chunk_delay_ms", 0)) / 1000.0
        return SimulatedStream(_Answer(target, request, kind="chat"), delay_s, is_cut=fault == "cut")

    async def completions(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult:
        answer = await _answer_or_raise(target, request, timeouts, kind="completions")
        body = {
            "id": answer.id,
            "object": "text_completion",
            "created": answer.created,
            "model": target.upstream_model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {"text": choice.text, "index": choice.index, "logprobs": None, "finish_reason": choice.finish_reason}
                for choice in answer.choices
            ],
            "usage": _usage_json(answer.usage),
        }
        return ChatResult(orjson.dumps(body), answer.usage, answer.finish_reason)

    async def open_completions_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> SimulatedStream:
        fault = _fault(target, request)
        await _raise_fault_before_first_byte(fault, target, timeouts)
        delay_s = float(target.options.get("chunk_delay_ms", 0)) / 1000.0
        return SimulatedStream(_Answer(target, request, kind="completions"), delay_s, is_cut=fault == "cut")

    async def embeddings(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> EmbeddingResult:
        """Unit vectors derived from each input's hash: equal inputs, equal vectors."""
        fault = target.options.get("fault")
        await _raise_fault_before_first_byte(fault if fault in FAULTS else None, target, timeouts)
        inputs = request.get("input")
        texts = [inputs] if isinstance(inputs, str) else [t if isinstance(t, str) else orjson.dumps(t).decode() for t in inputs or []]
        dims = int(target.options.get("embedding_dims", 256))
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = _unit_vector(text, dims)
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": value})
        prompt_tokens = sum(tokens.count_text(text) for text in texts)
        body = {
            "object": "list",
            "data": data,
            "model": target.upstream_model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return EmbeddingResult(orjson.dumps(body), Usage(prompt_tokens=prompt_tokens))


def _unit_vector(text: str, dims: int) -> list[float]:
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class SimulatedStream:
    __slots__ = ("_chunks",)

    def __init__(self, answer: _Answer, delay_s: float, *, is_cut: bool) -> None:
        self._chunks = _iter_chunks(answer, delay_s, is_cut)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()


MAX_N = 16
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy endpoint


class _Choice:
    """One choice of an answer: text pieces, or one tool call whose arguments come in pieces."""

    __slots__ = ("index", "pieces", "text", "finish_reason", "tool_call")

    def __init__(self, index: int, pieces: list[str], limit: int | None, tool_call: dict | None = None) -> None:
        self.index = index
        self.tool_call = tool_call  # {"id", "name"}; the arguments are the pieces
        self.finish_reason = "tool_calls" if tool_call else "stop"
        if limit is not None:
            while pieces and tokens.count_text("".join(pieces)) > limit:
                pieces.pop()
                self.finish_reason = "length"
        self.pieces = pieces
        self.text = "".join(pieces)


class _Answer:
    """The deterministic choices of one request, with their usage."""

    __slots__ = ("id", "created", "model", "object", "choices", "finish_reason", "usage")

    def __init__(self, target: Target, request: dict, *, kind: str = "chat") -> None:
        prefix = "cmpl-sim" if kind == "completions" else "chatcmpl-sim"
        self.id = f"{prefix}{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = target.upstream_model
        self.object = "text_completion" if kind == "completions" else "chat.completion.chunk"
        seed_of = request.get("prompt") if kind == "completions" else request.get("messages") or []
        seed = hashlib.blake2b(orjson.dumps(seed_of, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        if limit is None and kind == "completions":
            limit = _COMPLETIONS_DEFAULT_MAX_TOKENS
        n = _choice_count(request)
        tool = _tool_to_call(request) if kind == "chat" else None
        schema = _json_schema_asked(request) if kind == "chat" else None
        self.choices = []
        for index in range(n):
            rng = random.Random(seed + index.to_bytes(2, "big"))
            if tool is not None:
                arguments = orjson.dumps(_fill(tool.get("parameters") or {}, rng, tool["name"])).decode()
                call = {"id": f"call_sim{uuid.uuid4().hex[:20]}", "name": tool["name"]}
                self.choices.append(_Choice(index, _json_pieces(arguments), None, tool_call=call))
            elif schema is not None:
                text = orjson.dumps(_fill(schema, rng, "answer")).decode()
                self.choices.append(_Choice(index, _json_pieces(text), limit))
            else:
                self.choices.append(_Choice(index, _lorem(rng), limit))
        self.finish_reason = self.choices[0].finish_reason
        prompt_tokens = tokens.estimate_request_prompt_tokens(request)
        completion_tokens = sum(tokens.count_text(c.text) for c in self.choices)
        completion_tokens += sum(tokens.count_text(c.tool_call["name"]) for c in self.choices if c.tool_call)
        self.usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=min(int(target.options.get("cached_tokens", 0)), prompt_tokens),
        )


def _choice_count(request: dict) -> int:
    n = request.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise ProviderError(ErrorKind.BAD_REQUEST, f"'n' must be an integer from 1 to {MAX_N} (simulated).", status=400)
    return n


def _tool_to_call(request: dict) -> dict | None:
    """The function to call ({"name", "parameters"}), or None to answer with text."""
    functions = [
        tool["function"]
        for tool in request.get("tools") or []
        if isinstance(tool, dict) and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict) and tool["function"].get("name")
    ]
    if not functions:
        return None
    choice = request.get("tool_choice", "auto")
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for function in functions:
            if function["name"] == name:
                return function
        raise ProviderError(ErrorKind.BAD_REQUEST, f"tool_choice names an unknown function {name!r} (simulated).", status=400)
    messages = request.get("messages") or []
    if choice != "required" and messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None  # the tool answered: say something about it rather than call again forever
    return functions[0]


def _json_schema_asked(request: dict) -> dict | None:
    """The schema an answer must fill, {} for a bare JSON object, None for plain text."""
    response_format = request.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


def _fill(schema: dict, rng: random.Random, name: str, depth: int = 0):
    """A plausible value of a JSON schema: objects get their required properties (every
    property when `additionalProperties` is false, as strict schemas say)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            options = [s for s in schema[key] if isinstance(s, dict) and s.get("type") != "null"]
            return _fill(options[0] if options else schema[key][0], rng, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if depth > 8:  # a recursive schema: stop somewhere
        kind = "null" if kind in ("object", "array") else kind
    if kind == "object":
        properties = schema.get("properties") or {}
        wanted = list(properties) if schema.get("additionalProperties") is False else schema.get("required") or []
        return {key: _fill(properties.get(key, {}), rng, key, depth + 1) for key in wanted}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        return [_fill(schema.get("items") or {}, rng, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), rng.randint(1, 10))
    if kind == "number":
        return round(max(float(schema.get("minimum", 0)), rng.uniform(1, 100)), 2)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string_for(name, schema, rng)


_PLAUSIBLE = {
    "location": "Paris", "city": "Paris", "country": "France", "unit": "celsius", "units": "metric",
    "email": "ada@example.com", "url": "https://example.com", "date": "2026-01-01", "name": "Ada",
    "query": "what is a relay", "language": "en", "timezone": "UTC",
}


def _string_for(name: str, schema: dict, rng: random.Random) -> str:
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    if schema.get("format") == "date":
        return "2026-01-01"
    lowered = name.lower()
    for hint, value in _PLAUSIBLE.items():
        if hint in lowered:
            return value
    return " ".join(rng.choices(_WORDS, k=rng.randint(2, 5)))


def _json_pieces(text: str) -> list[str]:
    """JSON text in stream-sized pieces (cut where a token may end, joined they are the text)."""
    return [piece for piece in re.split(r"(?<=[,:{}\[\] ])", text) if piece]


def _lorem(rng: random.Random) -> list[str]:
    """Word-sized pieces (each but the first with its leading space) of a few sentences."""
    pieces: list[str] = []
    for _ in range(rng.randint(2, 4)):
        words = rng.choices(_WORDS, k=rng.randint(5, 12))
        words[0] = words[0].capitalize()
        words[-1] += "."
        for word in words:
            pieces.append(f" {word}" if pieces else word)
    return pieces


def _message_choice(choice: _Choice) -> dict:
    message: dict = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_call:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": choice.tool_call["id"],
                "type": "function",
                "function": {"name": choice.tool_call["name"], "arguments": choice.text},
            }
        ]
    return {"index": choice.index, "message": message, "logprobs": None, "finish_reason": choice.finish_reason}


async def _answer_or_raise(target: Target, request: dict, timeouts: Timeouts, *, kind: str) -> _Answer:
    fault = _fault(target, request)
    await _raise_fault_before_first_byte(fault, target, timeouts)
    if fault == "cut":
        raise ProviderError(ErrorKind.TRANSIENT, "upstream connection failed (simulated cut)")
    return _Answer(target, request, kind=kind)


async def _iter_chunks(answer: _Answer, delay_s: float, is_cut: bool) -> AsyncIterator[Chunk]:
    # Every chunk shares its head and tail; only the choice differs.
    is_chat = answer.object == "chat.completion.chunk"
    head = b"".join(
        (
            b'data: {"id":"',
            answer.id.encode(),
            b'","object":"',
            answer.object.encode(),
            b'","created":',
            str(answer.created).encode(),
            b',"model":',
            orjson.dumps(answer.model),
            b',"system_fingerprint":"',
            _FINGERPRINT.encode(),
            b'","choices":[',
        )
    )
    tail = b'],"usage":null}\n\n'

    def event(choice: _Choice, delta: dict | None, text: str | None, finish: str | None) -> bytes:
        if is_chat:
            body = {"index": choice.index, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
        else:
            body = {"text": text or "", "index": choice.index, "logprobs": None, "finish_reason": finish}
        return head + orjson.dumps(body) + tail

    sent = 0
    for choice in answer.choices:
        if is_chat:
            first: dict = {"role": "assistant", "content": ""}
            if choice.tool_call:
                first = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": choice.tool_call["id"],
                            "type": "function",
                            "function": {"name": choice.tool_call["name"], "arguments": ""},
                        }
                    ],
                }
            yield Chunk(event(choice, first, None, None), choice.tool_call["name"] if choice.tool_call else "")
        for piece in choice.pieces:
            if is_cut and sent == _CUT_AFTER_CHUNKS:
                raise ProviderError(ErrorKind.TRANSIENT, "upstream stream broke (simulated cut)")
            if delay_s:
                await asyncio.sleep(delay_s)
            if choice.tool_call:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            else:
                delta = {"content": piece}
            yield Chunk(event(choice, delta, piece, None), piece)
            sent += 1
        if is_cut:  # fewer pieces than the cut point: break before the end all the same
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream broke (simulated cut)")
        yield Chunk(event(choice, {}, "", choice.finish_reason), finish_reason=choice.finish_reason)
    usage = orjson.dumps(_usage_json(answer.usage))
    yield Chunk(head + b'],"usage":' + usage + b"}\n\n", usage=answer.usage, is_usage_only=True)


def _usage_json(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _fault(target: Target, request: dict) -> str | None:
    fault = target.options.get("fault")
    if fault in FAULTS:  # unknown names are ignored, like unknown markers
        rate = float(target.options.get("fault_rate", 1.0))
        if rate >= 1.0 or random.random() < rate:
            return fault
    text = _last_user_text(request.get("messages") or [])
    if "[[sim:" in text:
        match = _MARKER.search(text)
        if match and match.group(1) in FAULTS:
            return match.group(1)
    return None


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part.get("text") or "" for part in content if isinstance(part, dict)
            )
        return ""
    return ""


async def _raise_fault_before_first_byte(
    fault: str | None, target: Target, timeouts: Timeouts
) -> None:
    if fault is None or fault == "cut":
        return
    if fault == "slow":
        delay_s = float(target.options.get("slow_ms", 2000)) / 1000.0
        if delay_s > timeouts.first_byte_s:
            await asyncio.sleep(timeouts.first_byte_s)
            raise ProviderError(
                ErrorKind.TRANSIENT,
                f"upstream sent no first chunk within {timeouts.first_byte_s:g}s (simulated)",
            )
        await asyncio.sleep(delay_s)
        return
    raise _FAULT_ERRORS[fault](target)


_FAULT_ERRORS = {
    "429": lambda target: ProviderError(
        ErrorKind.RATE_LIMITED,
        "upstream 429: rate limited (simulated)",
        status=429,
        retry_after_s=float(target.options.get("retry_after_s", 1.0)),
        code="rate_limit_exceeded",
    ),
    "500": lambda target: ProviderError(
        ErrorKind.TRANSIENT, "upstream 500: server error (simulated)", status=500
    ),
    "timeout": lambda target: ProviderError(
        ErrorKind.TRANSIENT, "upstream timed out (simulated)"
    ),
    "auth": lambda target: ProviderError(
        ErrorKind.AUTH,
        "upstream 401: the upstream refused the channel's credentials (simulated)",
        status=401,
        code="invalid_api_key",
    ),
    "quota": lambda target: ProviderError(
        ErrorKind.QUOTA,
        "upstream 429: the upstream account is out of quota (simulated)",
        status=429,
        code="insufficient_quota",
    ),
    "context": lambda target: ProviderError(
        ErrorKind.CONTEXT_OVERFLOW,
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in more tokens. Please reduce the length of the messages. (simulated)",
        status=400,
        code="context_length_exceeded",
    ),
    "400": lambda target: ProviderError(
        ErrorKind.BAD_REQUEST, "Invalid request (simulated).", status=400
    ),
}
