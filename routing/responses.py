"""OpenAI's Responses API (`POST /v1/responses`) in front of every upstream.

Each attempt goes one of two ways, chosen for its route, so failover before the first byte may
cross from one way to the other:

- passed through, to a channel that speaks the Responses API (`providers.brands.speaks_responses`:
  OpenAI's own API, or a channel with `options.responses_api: true`): the client's body goes to
  `{base_url}/responses` with the upstream's model name and `max_output_tokens` set to the limit
  held (chat's limit and choices fields, which Responses does not know, are left out); the
  Response (its `id` the upstream's) and its stream events come back as the upstream sent them.
  An upstream failure after the stream began ends it with one `error` event.
- translated, for every other channel: a chat request (`providers.translate.responses`), its
  answer (whole, or chat chunks as they stream) made back into a Response or Responses events.

Either way it is the journey of /v1/chat/completions: admission, routing, failover, the hold and
its settlement (the upstream's usage, parsed and bounded, or what was counted), logs. Every
request is first translated, whichever way it then goes: what chat cannot carry (built-in tools,
file ids, item references) is a 400 on every route, and so are `background`, `conversation` and
`prompt`, which name work or state the relay can neither bill nor keep to one tenant.

`previous_response_id` (records kept by tenant in the cache, Redis when configured, this
process's memory otherwise, for RESPONSES_STORE_TTL_S; only for requests with `store` not false):

- a response this relay translated is kept as its conversation (input and output as chat
  messages): the follow-up is translated, on any route, with the conversation before its input;
- a passed-through response is kept as the channel that made it and the tokens its conversation
  holds so far: the follow-up goes to that channel only, passed through with the id (the upstream
  keeps the conversation), and those tokens count as input for its hold and for the bounds on
  what the upstream may report; when that channel cannot take it now, 503;
- any other id (unknown, expired, another tenant's, made with `store: false`) is a 400 naming
  the parameter and is never sent upstream, where the operator's account holds every tenant's
  responses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import AsyncIterator

import orjson
from django.conf import settings
from django.core.cache import cache

from channels import upstream
from channels.table import Route
from providers import brands, tokens
from providers.base import NATIVE_ANTHROPIC, ProviderError, Target, Timeouts, Usage
from providers.openai import parse_usage
from providers.registry import get_adapter
from providers.translate import responses as translate
from providers.usage import usage_from_responses

from .directives import responses_line_strip
from .errors import InvalidRequest, NoAvailableChannel, UpstreamError, echo
from .journey import (
    Call,
    admit_chat,
    chat_operation,
    estimate_usage,
    generate,
    parse_body,
)
from .metering import CHOICES_FIELDS, OUTPUT_LIMIT_FIELDS, output_limit_of
from .replies import Reply, StreamReply, chat_stream_items
from .schemas import ResponsesRequest, request_check

__all__ = ["responses", "route_speaks_responses"]

_REFUSED = {
    "background": "Background responses are not supported: stream the response, or wait for it.",
    "conversation": "Conversation objects are not supported: use previous_response_id, or send the conversation as input.",
    "prompt": "Stored prompt templates are not supported: send the instructions and input themselves.",
}
# Fields of chat, not of Responses, that an upstream might still honour: never sent on as given
# (the limit held goes as `max_output_tokens`); and our own internal key.
_NOT_PASSED = frozenset({*OUTPUT_LIMIT_FIELDS, *CHOICES_FIELDS, NATIVE_ANTHROPIC})
_END_EVENTS = (b"event: response.completed\n", b"event: response.incomplete\n")
_MAX_ID_CHARS = 256  # a longer "id" from an upstream is not remembered


@dataclass(frozen=True, slots=True)
class _Memory:
    """What the store holds for a `previous_response_id`."""

    history: list[dict]  # a translated response: its conversation as chat messages
    channel_id: int | None = None  # a passed-through response: the channel that holds it
    context_tokens: int = 0  # ... and the input its conversation is upstream
    session: str | None = None  # ... and, on a multi-key channel, the session whose key holds it


async def responses(call: Call, body: bytes) -> Reply | StreamReply:
    native = parse_body(body)
    request_check(ResponsesRequest, native)
    for name, why in _REFUSED.items():
        if native.get(name) not in (None, False):
            raise InvalidRequest(why, param=name, code="unsupported_parameter")
    previous_id = native.get("previous_response_id")
    memory = await _recall(call, previous_id) if previous_id else _Memory([])
    try:
        request, conversation = translate.to_chat_request(native, memory.history)
    except ProviderError as error:
        raise InvalidRequest(error.message, code="unsupported_content") from None
    responses_line_strip(native)  # the chat request keeps the line: `steer` reads it there
    info, routes = await admit_chat(call, request)
    if memory.channel_id is not None:
        routes = [route for route in routes if route.channel_id == memory.channel_id and route_speaks_responses(route)]
        if not routes:
            raise NoAvailableChannel(
                f"The upstream that holds the previous response '{previous_id}' cannot take this request now "
                f"(it is unavailable or does not serve '{info.public_id}'); try again later, or send the conversation as input."
            )
        if memory.session is not None:
            call.session_continue(memory.session)
    # A stored translated conversation is not upstream anywhere: its follow-up is translated.
    way = _Way(call, request, None if memory.history else native)
    result = await generate(call, request, info, routes, way, text_of=_answer_text, context_tokens=memory.context_tokens)
    is_stored = native.get("store", True) is not False
    if way.is_passed:
        passed = _Passed(call, request, context_tokens=memory.context_tokens, is_stored=is_stored)
        if isinstance(result, StreamReply):
            return StreamReply(passed.events(result.chunks), result.headers)
        answer = orjson.loads(result.body)  # the adapter checked it is a Response object
        await passed.remember(answer)
        return Reply(200, result.body, result.headers)
    response_id = "resp_" + call.identity.request_id.removeprefix("req_")
    if isinstance(result, StreamReply):
        state = translate.ResponseEvents(body=native, response_id=response_id, model=native["model"], previous_response_id=previous_id)
        events = _events(result.chunks, state, call=call, conversation=conversation if is_stored else None)
        return StreamReply(events, result.headers)
    completion = orjson.loads(result.body)
    usage = parse_usage(completion.get("usage")) or estimate_usage(request, _text(completion))  # unusable: counted
    response = translate.to_response(completion, body=native, response_id=response_id, usage=usage, previous_response_id=previous_id)
    if is_stored:
        await _remember(call, response_id, conversation + translate.output_messages(response))
    return Reply(200, orjson.dumps(response), result.headers)


# --- which way each attempt goes ----------------------------------------------------------------


def _speaks(adapter, target: Target) -> bool:
    return hasattr(adapter, "open_responses_stream") and brands.speaks_responses(
        brand=target.brand, base_url=target.base_url, options=target.options
    )


def route_speaks_responses(route: Route) -> bool:
    """Whether `route` takes Responses requests as they are (the same test an attempt makes)."""
    return _speaks(get_adapter(route.provider_type), Target(route.base_url, route.upstream_model, None, route.options, route.brand))


class _Way:
    """One attempt's operation (`journey.send`): the Responses body to a route that speaks it
    (when `native` may go as it is), else the chat request. `is_passed` is the last attempt's
    way: after `send` returns, the way of the one that answered."""

    def __init__(self, call: Call, request: dict, native: dict | None) -> None:
        self.call = call
        self.request = request
        self.native = native
        self.chat = chat_operation(call, request)
        self.is_passed = False

    async def __call__(self, adapter, target: Target, timeouts: Timeouts):
        self.is_passed = self.native is not None and _speaks(adapter, target)
        if not self.is_passed:
            return await self.chat(adapter, target, timeouts)
        body = {name: value for name, value in self.native.items() if name not in _NOT_PASSED}
        body["max_output_tokens"] = output_limit_of(self.request)  # what the hold covers (written there by `generate`)
        if self.call.outcome.is_stream:
            return await adapter.open_responses_stream(upstream.client(), target, body, timeouts)
        return await adapter.responses(upstream.client(), target, body, timeouts)


# --- passed through -------------------------------------------------------------------------------


class _Passed:
    """What follows a passed-through answer: the stream's events forwarded (an `error` event
    when it broke), and the response's id remembered with the channel that made it."""

    def __init__(self, call: Call, request: dict, *, context_tokens: int, is_stored: bool) -> None:
        self.call = call
        self.request = request
        self.context_tokens = context_tokens
        self.is_stored = is_stored

    async def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The journey's stream of upstream events, as they come; the journey's own lines for
        chat clients (the end marker, a counted usage chunk) are not for this client."""
        forwarded = 0  # upstream events so far: the next sequence number
        end: dict | None = None
        items = chat_stream_items(chunks)
        try:
            async for kind, item in items:
                if kind == "event":
                    forwarded += 1
                    if item.startswith(_END_EVENTS):
                        end = _event_response(item)
                    yield item
                elif kind == "error":
                    yield _error_event(item, forwarded)
                elif kind == "done" and end is not None:
                    await self.remember(end)
        finally:
            await items.aclose()  # closes the journey's stream at once: a client that left cancels the upstream

    async def remember(self, answer: dict) -> None:
        """Record which channel holds this response (and the input its conversation now is),
        for a `previous_response_id` of the same tenant."""
        response_id = answer.get("id")
        route = self.call.attempts.route
        if not self.is_stored or route is None or not isinstance(response_id, str) or not 0 < len(response_id) <= _MAX_ID_CHARS:
            return
        reported = usage_from_responses(answer.get("usage"))
        output = reported.completion_tokens if reported is not None else tokens.count_text(_output_text(answer))
        prompt = self.call.outcome.prompt_tokens  # our count, the earlier context included (None: a free model, not counted)
        if prompt is None:
            prompt = estimate_usage(self.request, "", context_tokens=self.context_tokens).prompt_tokens
        # The output as the bounds bill it: never above the limit the upstream was sent.
        context_tokens = prompt + min(output, output_limit_of(self.request) or output)
        record = {"channel_id": route.channel_id, "context_tokens": context_tokens}
        if route.is_multikey:  # the follow-up goes to the same upstream account (key)
            record["session"] = self.call.session()
        await cache.aset(_store_key(self.call, response_id), orjson.dumps(record), timeout=settings.RESPONSES_STORE_TTL_S)


def _event_data(event: bytes) -> dict:
    _name, _, rest = event.partition(b"\ndata: ")
    try:
        obj = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _event_response(event: bytes) -> dict:
    response = _event_data(event).get("response")
    return response if isinstance(response, dict) else {}


def _error_event(message: str, sequence_number: int) -> bytes:
    error = UpstreamError(message)
    data = {"type": "error", "code": error.code, "message": error.message, "param": None, "sequence_number": sequence_number}
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def _output_text(answer: dict) -> str:
    """What a Response's output says (text, refusals, calls, reasoning summaries), for counting."""
    output = answer.get("output")
    parts: list[str] = []
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            parts += [value for value in (item.get("name"), item.get("arguments")) if isinstance(value, str)]
        for part in (item.get("content") or ()) if isinstance(item.get("content"), list) else ():
            if isinstance(part, dict):
                parts += [value for value in (part.get("text"), part.get("refusal")) if isinstance(value, str)]
        for part in (item.get("summary") or ()) if isinstance(item.get("summary"), list) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
    return "".join(parts)


def _answer_text(body: bytes) -> str:
    """A whole answer's text, either way it went (a Response, or a chat completion)."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(answer, dict):
        return ""
    try:
        return _output_text(answer) if "output" in answer else _text(answer)
    except (AttributeError, TypeError):  # a chat answer in an odd shape: nothing to count
        return ""


# --- the store ------------------------------------------------------------------------------------


def _store_key(call: Call, response_id: str) -> str:
    # the client names the id: hashed, so any text makes a well-formed key
    return f"tokenhub:responses:{call.identity.policy.tenant_id}:{hashlib.sha256(response_id.encode()).hexdigest()}"


async def _recall(call: Call, response_id: str) -> _Memory:
    stored = await cache.aget(_store_key(call, response_id))
    kept = orjson.loads(stored) if stored is not None else None
    if isinstance(kept, list):
        return _Memory(kept)
    if isinstance(kept, dict) and type(kept.get("channel_id")) is int and type(kept.get("context_tokens")) is int:
        session = kept.get("session")
        return _Memory([], kept["channel_id"], kept["context_tokens"], session if isinstance(session, str) else None)
    raise InvalidRequest(
        f"Previous response with id '{echo(response_id)}' not found.", param="previous_response_id", code="previous_response_not_found"
    )


async def _remember(call: Call, response_id: str, conversation: list[dict]) -> None:
    await cache.aset(_store_key(call, response_id), orjson.dumps(conversation), timeout=settings.RESPONSES_STORE_TTL_S)


# --- translated -------------------------------------------------------------------------------------


async def _events(
    chunks: AsyncIterator[bytes], state: translate.ResponseEvents, *, call: Call, conversation: list[dict] | None
) -> AsyncIterator[bytes]:
    """The journey's chat stream (OpenAI SSE lines) as Responses events."""
    usage: Usage | None = None
    yield state.start()
    items = chat_stream_items(chunks)
    try:
        async for kind, item in items:
            if kind == "done":
                yield state.finish(usage)
                if conversation is not None:
                    await _remember(call, state.response["id"], conversation + translate.output_messages(state.response))
            elif kind == "error":
                yield state.error(item)
            elif kind == "chunk":
                if item.get("usage"):
                    usage = parse_usage(item["usage"]) or usage
                events = state.feed(item)
                if events:
                    yield events
    finally:
        await items.aclose()  # closes the journey's stream at once: a client that left cancels the upstream


def _text(completion: dict) -> str:
    choices = completion.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""
