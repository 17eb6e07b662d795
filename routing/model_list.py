"""GET /v1/models and GET /v1/models/{id}, in the shape of the client that asks.

OpenAI's clients get `{"object": "list", "data": [{"id", "object": "model", "created",
"owned_by"}]}`; Anthropic's (a request carrying `anthropic-version` or `x-api-key`, as the
Anthropic SDK and Claude Code send) get `{"data": [{"type": "model", "id", "display_name",
"created_at"}], "has_more", "first_id", "last_id"}` with Anthropic's `limit`, `after_id` and
`before_id` paging. A key sees the models it may use: visible, allowed, and served to its
group by an enabled channel. `created` is when the operator added the model to the catalog;
`owned_by` is the brand of the route tried first (its highest priority).
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from channels.table import ModelInfo, RoutingTable, table_aget

from .errors import InvalidRequest, ModelNotFound, echo
from .journey import Call, check_rate
from .replies import Reply

ANTHROPIC_PAGE_DEFAULT, ANTHROPIC_PAGE_MAX = 20, 1000


def wants_anthropic_shape(headers) -> bool:
    return "anthropic-version" in headers or "x-api-key" in headers


def _visible(call: Call, table: RoutingTable) -> list[ModelInfo]:
    group = call.identity.policy.tenant_group
    return [
        info
        for public_id, info in sorted(table.models.items())
        if not info.is_hidden
        and call.identity.policy.allows_model(public_id)
        and any(r.is_enabled and group in r.groups for r in table.routes.get(public_id, ()))
    ]


def _owner(table: RoutingTable, public_id: str) -> str:
    routes = table.routes.get(public_id, ())
    return max(routes, key=lambda r: r.priority).brand if routes else "tokenhub"


def _openai_model(table: RoutingTable, info: ModelInfo) -> dict:
    return {"id": info.public_id, "object": "model", "created": info.created, "owned_by": _owner(table, info.public_id)}


def _anthropic_model(info: ModelInfo) -> dict:
    created_at = datetime.fromtimestamp(info.created, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": info.public_id, "display_name": info.public_id, "created_at": created_at}


def _page_limit(call: Call) -> int:
    text = call.identity.query.get("limit")
    if text is None:
        return ANTHROPIC_PAGE_DEFAULT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= ANTHROPIC_PAGE_MAX:  # isdigit alone takes "²"
        raise InvalidRequest(f"'limit' must be an integer from 1 to {ANTHROPIC_PAGE_MAX}.", param="limit", code="invalid_value")
    return int(text)


def _anthropic_page(call: Call, models: list[ModelInfo]) -> dict:
    limit = _page_limit(call)
    ids = [m.public_id for m in models]
    after, before = call.identity.query.get("after_id"), call.identity.query.get("before_id")
    for name, value in (("after_id", after), ("before_id", before)):
        if value is not None and value not in ids:
            raise InvalidRequest(f"'{name}' names no model in this list.", param=name, code="invalid_value")
    if before is not None:
        end = ids.index(before)
        page = models[max(0, end - limit):end]
        has_more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page = models[start:start + limit]
        has_more = start + limit < len(models)
    return {
        "data": [_anthropic_model(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].public_id if page else None,
        "last_id": page[-1].public_id if page else None,
    }


async def list_models(call: Call, _body: bytes) -> Reply:
    await check_rate(call)
    table = await table_aget()
    models = _visible(call, table)
    if wants_anthropic_shape(call.identity.headers):
        body = _anthropic_page(call, models)
    else:
        body = {"object": "list", "data": [_openai_model(table, m) for m in models]}
    return Reply(200, orjson.dumps(body), call.headers())


async def retrieve_model(call: Call, _body: bytes) -> Reply:
    """One model by its id (ids may hold slashes: `deepseek/deepseek-chat`) or an alias."""
    await check_rate(call)
    table = await table_aget()
    wanted = call.identity.path_params.get("model_id", "")
    info = table.resolve(wanted)
    if info is None or info not in _visible(call, table):
        raise ModelNotFound(f"The model '{echo(wanted)}' does not exist or you do not have access to it.", param="model")
    body = _anthropic_model(info) if wants_anthropic_shape(call.identity.headers) else _openai_model(table, info)
    return Reply(200, orjson.dumps(body), call.headers())
