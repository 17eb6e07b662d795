"""`POST /v1/embeddings` and the legacy `POST /v1/completions`.

Both take the journey's pieces (admission, routing, failover through `send`, the `Meter`,
`record`) with their own operation: only routes whose adapter has the method are tried
(embeddings: OpenAI-compatible and Gemini; completions: OpenAI-compatible). Embeddings hold
money for the input only (`max_output_tokens=0`) and are settled on the upstream's usage, or
on our own count when it gave none. Embeddings come back as the client asked, floats or
base64 (encoded here when the upstream ignored the request). Completions stream through the
journey's relay, so usage, settlement and logs behave as for chat.
"""

from __future__ import annotations

import orjson

from channels import upstream
from channels.table import Route, table_aget
from providers.registry import get_adapter

from .errors import NoAvailableChannel, TokenHubError
from .journey import (
    Call,
    candidates_for,
    check_rate,
    generate,
    parse_body,
    record,
    resolve_model,
    send,
    settle_and_record,
    steer,
    stream_take,
)
from .metering import Meter, output_limit_of
from .replies import Reply, StreamReply
from .schemas import CompletionsRequest, EmbeddingsRequest, request_check

__all__ = ["completions", "embeddings"]

LEGACY_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

async def embeddings(call: Call, body: bytes) -> Reply:
    request = parse_body(body)
    request_check(EmbeddingsRequest, request)
    steer(call, None)
    table = await table_aget()
    info = resolve_model(call, table, request["model"])
    await check_rate(call)
    routes = _able(await candidates_for(call, table, info), "embeddings", info.public_id)
    meter = Meter(call, info, request, max_output_tokens=0)
    await meter.prepare()

    async def operation(adapter, target, timeouts):
        return await adapter.embeddings(upstream.client(), target, request, timeouts)

    try:
        _route, result = await send(call, routes, meter, operation)
    except TokenHubError as error:
        record(call, status=error.status, error=error, meter=meter)
        raise
    await settle_and_record(call, meter, request, reported=result.usage, delivered_text=str, is_cut=False, status=200, finish_reason=None)
    return Reply(200, result.body, call.headers())


async def completions(call: Call, body: bytes) -> Reply | StreamReply:
    request = parse_body(body)
    request_check(CompletionsRequest, request)
    steer(call, None)
    table = await table_aget()
    info = resolve_model(call, table, request["model"])
    await check_rate(call)
    stream_take(call, request)
    routes = _able(await candidates_for(call, table, info), "completions", info.public_id)

    async def operation(adapter, target, timeouts):
        if call.outcome.is_stream:
            return await adapter.open_completions_stream(upstream.client(), target, request, timeouts)
        return await adapter.completions(upstream.client(), target, request, timeouts)

    # legacy completions know only `max_tokens`, and without one OpenAI answers 16 tokens: that is
    # what is held and sent (not the model's whole output limit)
    if output_limit_of(request) is None:
        request["max_tokens"] = LEGACY_DEFAULT_MAX_TOKENS
    return await generate(call, request, info, routes, operation, text_of=_choices_text, limit_field="max_tokens")


def _able(routes: list[Route], method: str, public_id: str) -> list[Route]:
    able = [route for route in routes if hasattr(get_adapter(route.provider_type), method)]
    if not able:
        kinds = ", ".join(sorted({route.provider_type for route in routes}))
        raise NoAvailableChannel(f"No channel serving '{public_id}' can answer {method} (its channels are: {kinds}).")
    return able


def _choices_text(body: bytes) -> str:
    try:
        choices = orjson.loads(body).get("choices") or []
        return "".join(choice.get("text") or "" for choice in choices)
    except (orjson.JSONDecodeError, AttributeError):
        return ""
