"""The adapter contract between `routing` and an upstream protocol. No Django here.

The relay speaks OpenAI chat-completions inside: a request is an OpenAI-shaped dict, a
non-streamed answer is OpenAI-shaped JSON bytes, a stream is a series of OpenAI chunk events
(`data: {...}\\n\\n`). Adapters for other protocols translate at this boundary.

Errors raised by adapters (all `ProviderError`), with what the router does about them:

    ProviderError                 kind                 router
     ├── (connect/timeout/5xx)     TRANSIENT            cool the channel briefly, fail over
     ├── (429)                     RATE_LIMITED         cool for Retry-After, fail over
     ├── (401/403)                 AUTH                 cool for long, fail over
     ├── (402, billing exhausted)  QUOTA               cool for long, fail over
     ├── (400, 404, 422)           BAD_REQUEST          answer the client 400, no failover
     ├── (400, vendor credit text) SUSPECTED_QUOTA      fail over; never cools or disables
     └── (context too long)        CONTEXT_OVERFLOW     answer the client 400, no failover

A failure *after* the first chunk reached the client cannot fail over; adapters raise the
same errors from the stream iterator and the router ends the stream with an error event.

Besides chat, an adapter may serve more (each a method the router looks for; see the
protocols at the end): `embeddings`, `completions` + `open_completions_stream` (legacy),
`responses` + `open_responses_stream` (OpenAI's Responses API passed through: the request is
the client's Responses body, `ChatResult.body` a Response and each `Chunk.data` one named
Responses event, `usage`/`finish_reason`/`text` keeping their meanings), `list_models` (model
discovery).

One exception to "OpenAI inside": a request may carry the client's own Anthropic Messages
request under `NATIVE_ANTHROPIC` as `{"body": <Messages body>, "beta": <anthropic-beta header
or "">}` (the /v1/messages endpoint puts it there). An adapter that speaks Anthropic then sends
that body as is (model and stream set by us) and answers in Anthropic's shape: `ChatResult.body` is a Messages object, each `Chunk.data` one Anthropic SSE event, while
`usage`/`finish_reason`/`text` keep their OpenAI meanings. Every other adapter ignores the key
(the OpenAI adapter drops it before sending).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

import httpx


NATIVE_ANTHROPIC = "_anthropic_native"


class ErrorKind(str, enum.Enum):
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    AUTH = "auth"
    QUOTA = "quota"
    BAD_REQUEST = "bad_request"
    CONTEXT_OVERFLOW = "context_overflow"
    # A 400 whose text is a vendor's own out-of-credit message: worth another channel, but
    # never held against this one (no cooldown, no disable): a 400's text may be the
    # customer's words echoed back.
    SUSPECTED_QUOTA = "suspected_quota"

    @property
    def counts_against_channel(self) -> bool:
        return self.is_retryable and self is not ErrorKind.SUSPECTED_QUOTA

    @property
    def is_retryable(self) -> bool:
        return self not in (ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_OVERFLOW)


class ProviderError(Exception):
    """An upstream failed. `message` is safe to show a customer: never a credential."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.code = code  # the upstream's error code when it gave one, e.g. "context_length_exceeded"

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value}, status={self.status}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_byte_s: float = 60.0  # until response headers and the first chunk
    idle_s: float = 60.0  # between two chunks of a stream


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to send one attempt."""

    base_url: str  # API root as the vendor SDK takes it (openai: up to /v1)
    upstream_model: str
    api_key: str | None = field(default=None, repr=False)  # a credential: never in a repr or a log line
    options: dict = field(default_factory=dict)  # brand quirks, e.g. azure api_version
    brand: str = ""  # the channel's brand (deepseek, azure, ...); see providers.brands


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from a cache (billed at cached-input price)
    cache_creation_tokens: int = 0  # prompt tokens written to a cache (Anthropic); part of prompt_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResult:
    """A whole non-streamed answer, already in OpenAI's shape."""

    body: bytes  # JSON of an OpenAI chat.completion object
    usage: Usage | None
    finish_reason: str | None


@dataclass(slots=True)
class Chunk:
    """One OpenAI chunk event. `data` is the whole SSE event, `data: {...}\\n\\n`."""

    data: bytes
    text: str = ""  # content (and reasoning/tool-argument) text in this chunk, for counting
    usage: Usage | None = None
    finish_reason: str | None = None
    is_usage_only: bool = False  # `choices: []` + usage: forwarded only if the client asked


class ChatStream(Protocol):
    """An open stream whose status was 2xx and whose first chunk has arrived."""

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


class Adapter(Protocol):
    name: str

    async def chat(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult: ...

    async def open_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatStream:
        """Send the request, check the status, wait for the first chunk; raise ProviderError
        for anything that goes wrong until then (so the router may fail over)."""
        ...


@dataclass(slots=True)
class EmbeddingResult:
    """An OpenAI `list` of embeddings, in the encoding the client asked for."""

    body: bytes
    usage: Usage | None


@dataclass(slots=True)
class MediaResult:
    """A whole answer of a media endpoint (images, audio, moderations), passed on as received:
    `body` in `media_type`, and `answer` its JSON object when it is JSON (None for audio)."""

    body: bytes
    media_type: str
    answer: dict | None


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """One model an upstream says it serves (model discovery)."""

    id: str  # the name to send upstream
    display_name: str = ""
    context_window: int | None = None
    max_output: int | None = None
    kinds: tuple[str, ...] = ("chat",)  # "chat", "embeddings"


class EmbeddingsAdapter(Protocol):
    async def embeddings(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> EmbeddingResult: ...


class CompletionsAdapter(Protocol):
    """Legacy `/v1/completions`: same result and stream types as chat, `text` choices."""

    async def completions(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatResult: ...

    async def open_completions_stream(
        self, client: httpx.AsyncClient, target: Target, request: dict, timeouts: Timeouts
    ) -> ChatStream: ...


class ResponsesAdapter(Protocol):
    """OpenAI's Responses API, for targets that speak it (`providers.brands.speaks_responses`)."""

    async def responses(
        self, client: httpx.AsyncClient, target: Target, body: dict, timeouts: Timeouts
    ) -> ChatResult: ...

    async def open_responses_stream(
        self, client: httpx.AsyncClient, target: Target, body: dict, timeouts: Timeouts
    ) -> ChatStream: ...


class ModelLister(Protocol):
    async def list_models(
        self, client: httpx.AsyncClient, target: Target, timeouts: Timeouts
    ) -> list[DiscoveredModel]: ...
