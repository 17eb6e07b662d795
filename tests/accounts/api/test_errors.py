"""Answers made outside the handlers have the documented error shape too (docs/api.md, Errors):
a path no route matches, and a method a path does not take, for every path of the schema."""

from __future__ import annotations

import httpx

from .conftest import assert_error
from .test_isolation import SCHEMA, _fill

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
IDS = {"tenant_id": 1, "key_id": 1, "member_id": 1, "channel_id": 1, "name": "default"}


def test_an_unknown_path_is_a_json_404(relay_server, operator):
    anonymous = httpx.Client(base_url=operator.base_url, timeout=30)
    with anonymous:
        for client in (anonymous, operator):
            for method in METHODS:
                for path in ("/nosuch", "/tenants/1/nosuch", "/tenants/", "/tenants/1/keys/1/rotate/now"):
                    assert_error(client.request(method, path, json={}), 404, "not_found")


def test_a_method_a_path_does_not_take_is_a_json_405(relay_server, operator):
    checked = 0
    for path, operations in SCHEMA["paths"].items():
        allowed = {method.upper() for method in operations}
        for method in set(METHODS) - allowed:
            response = operator.request(method, _fill(path, IDS), json={})
            assert_error(response, 405, "method_not_allowed")
            assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed, path
            checked += 1
    assert checked > 20
