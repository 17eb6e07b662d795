"""Anthropic's Messages API in front of every upstream: `POST /v1/messages` and
`POST /v1/messages/count_tokens`.

A Messages request is translated into an OpenAI chat request and goes the same journey as
/v1/chat/completions (admission, routing, failover, billing, logs). It also carries the
client's own body (`providers.base.NATIVE_ANTHROPIC`): when the route that answers is an
Anthropic upstream, that body is what goes out and the answer comes back untouched, Message
JSON or SSE events byte for byte. Any other upstream's answer is translated back:
`chat.completion` -> Message, OpenAI chunks -> `message_start`, `content_block_*`,
`message_delta`, `message_stop` (`providers.translate.anthropic`).

Errors are Anthropic's shape (`serve(..., protocol="anthropic")`); an error after the stream
began is one `error` event. `count_tokens` counts offline (`providers.tokens`): an estimate
in OpenAI's tokens, which is what the relay bills by when an upstream reports nothing.
"""

from __future__ import annotations

from typing import AsyncIterator

import orjson

from channels.table import table_aget
from providers.base import NATIVE_ANTHROPIC, ProviderError, Usage
from providers.openai import parse_usage
from providers.translate import anthropic as translate
from providers.translate.common import text_of

from . import counting
from .directives import anthropic_system_strip
from .errors import InvalidRequest
from .journey import Call, chat, check_rate, estimate_usage, parse_body, resolve_model
from .replies import Reply, StreamReply, chat_stream_items
from .schemas import CountTokensRequest, MessagesRequest, request_check

__all__ = ["count_tokens", "messages"]

async def messages(call: Call, body: bytes) -> Reply | StreamReply:
    native = parse_body(body)
    request_check(MessagesRequest, native, protocol="anthropic")
    request = _to_openai(native)
    anthropic_system_strip(native)  # the translated request keeps the line for the journey
    request[NATIVE_ANTHROPIC] = {"body": native, "beta": call.identity.headers.get("anthropic-beta", "")}
    result = await chat(call, request)
    is_native = call.attempts.route is not None and call.attempts.route.provider_type == "anthropic"
    message_id = "msg_" + call.identity.request_id.removeprefix("req_")
    headers = {**result.headers, "request-id": call.identity.request_id}
    if isinstance(result, StreamReply):
        input_tokens = call.outcome.prompt_tokens
        if input_tokens is None and not is_native:  # a free model: the meter did not count
            input_tokens = await counting.prompt_tokens_acount(request, body_size=call.identity.body_size)
        events = _events(result.chunks, is_native=is_native, model=native["model"], message_id=message_id, input_tokens=input_tokens or 0)
        return StreamReply(events, headers)
    if is_native:
        return Reply(200, result.body, headers)
    completion = orjson.loads(result.body)
    usage = parse_usage(completion.get("usage"))
    if usage is None:  # the upstream told nothing usable: the same count the bill used
        usage = estimate_usage(request, _completion_text(completion))
    message = translate.to_message(completion, model=completion.get("model") or native["model"], message_id=message_id, usage=usage)
    return Reply(200, orjson.dumps(message), headers)


async def count_tokens(call: Call, body: bytes) -> Reply:
    native = parse_body(body)
    request_check(CountTokensRequest, native, protocol="anthropic")
    resolve_model(call, await table_aget(), native["model"])
    await check_rate(call)  # counting is work done for the key: it counts against its RPM
    request = _to_openai(native)
    count = await counting.prompt_tokens_acount(request, body_size=call.identity.body_size)
    return Reply(200, orjson.dumps({"input_tokens": count}), {**call.headers(), "request-id": call.identity.request_id})


def _to_openai(native: dict) -> dict:
    try:
        return translate.from_messages_request(native)
    except ProviderError as error:
        raise InvalidRequest(error.message, code="unsupported_content") from None


async def _events(chunks: AsyncIterator[bytes], *, is_native: bool, model: str, message_id: str, input_tokens: int) -> AsyncIterator[bytes]:
    """The journey's stream (OpenAI SSE lines, or an Anthropic upstream's own events) as
    Anthropic events."""
    state = translate.ChunkEvents(message_id=message_id, model=model, input_tokens=input_tokens)
    usage: Usage | None = None
    items = chat_stream_items(chunks)
    try:
        async for kind, item in items:
            if kind == "event":  # an Anthropic upstream's event, passed through
                yield item
            elif kind == "done":
                if not is_native:
                    yield state.finish(usage)
            elif kind == "error":
                yield state.error("api_error", item)
            elif not is_native:  # else a usage chunk the journey added: the upstream's events said it all
                if item.get("usage"):
                    usage = parse_usage(item["usage"]) or usage
                events = state.feed(item)
                if events:
                    yield events
    finally:
        await items.aclose()  # closes the journey's stream at once: a client that left cancels the upstream


def _completion_text(completion: dict) -> str:
    choices = completion.get("choices") or [{}]
    reply = choices[0].get("message") or {}
    return text_of(reply.get("content"))
