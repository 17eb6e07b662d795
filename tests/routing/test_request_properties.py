"""Property tests (hypothesis): bodies for every /v1 endpoint, built from that endpoint's own
schema (`routing.schemas.SCHEMAS`, as JSON Schema) and then mutated (a value anywhere replaced
by arbitrary JSON, or a key dropped), sent to the real relay over HTTP. Whatever the body: never
a 5xx, never a hold left open, the ledger audit clean. Example counts stay modest: the suite
runs twice in CI."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from routing.schemas import SCHEMAS
from tests.conftest import make_channel, make_price, settle_background

EXAMPLES = 15

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_TYPES = st.sampled_from(["text", "image", "image_url", "tool_use", "tool_result", "function", "document", "thinking"])


def from_json_schema(node: dict, defs: dict, name: str = "") -> st.SearchStrategy:
    """A strategy for values valid under the (pydantic-made) JSON Schema `node`."""
    if "$ref" in node:
        return st.deferred(lambda: from_json_schema(defs[node["$ref"].rsplit("/", 1)[-1]], defs, name))
    if "anyOf" in node:
        return st.one_of([from_json_schema(option, defs, name) for option in node["anyOf"]])
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties")
        if not properties:
            return st.dictionaries(st.sampled_from(["type", "text", "url", "data", "name"]), st.text(max_size=6), max_size=2)
        required = set(node.get("required", ()))
        fields = {key: from_json_schema(value, defs, key) for key, value in properties.items()}
        optional = {key: fields[key] for key in fields if key not in required}
        return st.fixed_dictionaries({key: fields[key] for key in required}, optional=optional)
    if kind == "array":
        low = node.get("minItems", 0)
        return st.lists(from_json_schema(node.get("items", {}), defs, name), min_size=low, max_size=low + 2)
    if kind == "string":
        if name == "model":
            return st.just("gpt-test")
        if name == "type":
            return _TYPES
        return st.text(min_size=node.get("minLength", 0), max_size=12)
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum", -1) + 1)
        return st.integers(min_value=max(low, 0), max_value=max(low, 0) + 6)
    if kind == "number":
        return st.floats(min_value=0, max_value=2)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated(draw, schema):
    body = draw(from_json_schema(schema, schema.get("$defs", {})))
    if draw(st.booleans()):  # half of them as the schema allows, half broken somewhere
        return body
    paths = [p for p in _paths(body) if p]
    if not paths:
        return draw(JSON)
    path = draw(st.sampled_from(paths))
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return body


@pytest.fixture
def served(upstream_factory, transactional_db):
    fake = upstream_factory(name="props", chunks=2)
    make_price("gpt-test", "1", "2", request_usd="0.001", image_usd="0.01", second_usd="0.0001")
    # the media endpoints are served only by channels that declare them (routing.media)
    make_channel("main", fake.url + "/v1", models=["gpt-test"], options={"endpoints": ["images.generations", "audio.transcriptions", "audio.speech", "moderations"]})
    yield fake
    fake.reset()


@pytest.mark.parametrize("endpoint", sorted(SCHEMAS))
def test_no_body_makes_a_5xx_or_leaves_a_hold_open(relay, alice, served, endpoint):
    from billing.models import Hold
    from billing.services import ledger_audit

    schema = SCHEMAS[endpoint].model_json_schema()
    path = "/v1/" + endpoint.replace(".", "/")

    @hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=mutated(schema))
    def check(body):
        answer = httpx.post(relay.url + path, json=body, headers={"authorization": f"Bearer {alice.key}"}, timeout=30)
        assert answer.status_code < 500, (body, answer.status_code, answer.text[:500])
        settle_background()
        assert not Hold.objects.filter(status=Hold.Status.OPEN).exists(), body

    check()
    assert ledger_audit() == []
