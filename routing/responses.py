"""OpenAI's Responses API (`POST /v1/responses`) in front of every upstream.

A Responses request is translated into a chat request (`providers.translate.responses`) and
goes the same journey as /v1/chat/completions: admission, routing, failover, the hold and its
settlement, logs. The answer (whole, or chat chunks as they stream) is translated back into a
Response or Responses stream events, so Codex and the SDK's `client.responses` work against
OpenAI-compatible, Anthropic and Gemini channels alike.

`previous_response_id` is honoured for responses this relay made for the same tenant with
`store` not false: the conversation (input and output, as chat messages) is kept in the cache
(Redis when configured, this process's memory otherwise) for RESPONSES_STORE_TTL_S. An unknown,
expired or other tenant's id is a 400 naming the parameter.
"""

from __future__ import annotations

import hashlib
from typing import AsyncIterator

import orjson
from django.conf import settings
from django.core.cache import cache

from providers.base import ProviderError, Usage
from providers.openai import parse_usage
from providers.translate import responses as translate

from .errors import InvalidRequest
from .journey import Call, chat, estimate_usage, parse_body
from .replies import Reply, StreamReply, chat_stream_items
from .schemas import ResponsesRequest, request_check

__all__ = ["responses"]


async def responses(call: Call, body: bytes) -> Reply | StreamReply:
    native = parse_body(body)
    request_check(ResponsesRequest, native)
    previous_id = native.get("previous_response_id")
    history = await _recall(call, previous_id) if previous_id else []
    try:
        request, conversation = translate.to_chat_request(native, history)
    except ProviderError as error:
        raise InvalidRequest(error.message, code="unsupported_content") from None
    result = await chat(call, request)
    response_id = "resp_" + call.request_id.removeprefix("req_")
    is_stored = native.get("store", True) is not False
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


def _store_key(call: Call, response_id: str) -> str:
    # the client names the id: hashed, so any text makes a well-formed key
    return f"tokenhub:responses:{call.policy.tenant_id}:{hashlib.sha256(response_id.encode()).hexdigest()}"


async def _recall(call: Call, response_id: str) -> list[dict]:
    history = await cache.aget(_store_key(call, response_id))
    if history is None:
        raise InvalidRequest(
            f"Previous response with id '{response_id}' not found.", param="previous_response_id", code="previous_response_not_found"
        )
    return orjson.loads(history)


async def _remember(call: Call, response_id: str, conversation: list[dict]) -> None:
    await cache.aset(_store_key(call, response_id), orjson.dumps(conversation), timeout=settings.RESPONSES_STORE_TTL_S)


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
