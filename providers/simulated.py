"""A pretend upstream, no network: demo channels, offline runs, failover drills.

Answers are OpenAI-shaped and deterministic: the text is pseudo-lorem seeded by a hash of
the messages, at most `max_tokens` (or `max_completion_tokens`) long, finish reason "length"
when cut there. Usage is counted with `providers.tokens`, as a real upstream would report it.

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

__all__ = ["SimulatedAdapter", "FAULTS"]

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
        fault = _fault(target, request)
        await _raise_fault_before_first_byte(fault, target, timeouts)
        if fault == "cut":
            raise ProviderError(ErrorKind.TRANSIENT, "upstream connection failed (simulated cut)")
        answer = _Answer(target, request)
        body = {
            "id": answer.id,
            "object": "chat.completion",
            "created": answer.created,
            "model": target.upstream_model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": _usage_json(answer.usage),
        }
        return ChatResult(orjson.dumps(body), answer.usage, answer.finish_reason)

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> SimulatedStream:
        fault = _fault(target, request)
        await _raise_fault_before_first_byte(fault, target, timeouts)
        delay_s = float(target.options.get("chunk_delay_ms", 0)) / 1000.0
        return SimulatedStream(_Answer(target, request), delay_s, is_cut=fault == "cut")


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


class _Answer:
    """The deterministic text of one request, with its usage."""

    __slots__ = ("id", "created", "model", "pieces", "text", "finish_reason", "usage")

    def __init__(self, target: Target, request: dict) -> None:
        self.id = f"chatcmpl-sim{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = target.upstream_model
        messages = request.get("messages") or []
        seed = hashlib.blake2b(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS), digest_size=8)
        pieces = _lorem(random.Random(seed.digest()))
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        self.finish_reason = "stop"
        if limit is not None:
            while pieces and tokens.count_text("".join(pieces)) > limit:
                pieces.pop()
                self.finish_reason = "length"
        self.pieces = pieces
        self.text = "".join(pieces)
        prompt_tokens = tokens.estimate_request_prompt_tokens(request)
        self.usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens.count_text(self.text),
            cached_tokens=min(int(target.options.get("cached_tokens", 0)), prompt_tokens),
        )


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


async def _iter_chunks(answer: _Answer, delay_s: float, is_cut: bool) -> AsyncIterator[Chunk]:
    # Every chunk shares its head and tail; only the delta differs.
    head = b"".join(
        (
            b'data: {"id":"',
            answer.id.encode(),
            b'","object":"chat.completion.chunk","created":',
            str(answer.created).encode(),
            b',"model":',
            orjson.dumps(answer.model),
            b',"system_fingerprint":"',
            _FINGERPRINT.encode(),
            b'","choices":[',
        )
    )
    tail = b'],"usage":null}\n\n'

    yield Chunk(
        head
        + b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
        + b'"finish_reason":null}'
        + tail
    )
    for sent, piece in enumerate(answer.pieces):
        if is_cut and sent == _CUT_AFTER_CHUNKS:
            raise ProviderError(ErrorKind.TRANSIENT, "upstream stream broke (simulated cut)")
        if delay_s:
            await asyncio.sleep(delay_s)
        data = (
            head
            + b'{"index":0,"delta":{"content":'
            + orjson.dumps(piece)
            + b'},"logprobs":null,"finish_reason":null}'
            + tail
        )
        yield Chunk(data, piece)
    if is_cut:  # fewer pieces than the cut point: break before the end all the same
        raise ProviderError(ErrorKind.TRANSIENT, "upstream stream broke (simulated cut)")
    finish = answer.finish_reason.encode()
    yield Chunk(
        head
        + b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"'
        + finish
        + b'"}'
        + tail,
        finish_reason=answer.finish_reason,
    )
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
