"""Every endpoint of the management API, against its own OpenAPI schema (schemathesis
strategies driven by hypothesis): with an operator token, whatever the generated input, never
a 5xx, every answer matches the schema, and every error has the one documented shape."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_every_endpoint_matches_its_schema(relay_server, cast, operator):
    from tests.conftest import make_channel

    make_channel("schema-fuzz", "sim://", provider_type="simulated")
    schema = schemathesis.openapi.from_url(relay_server.url + "/api/v1/openapi.json")
    headers = dict(operator.headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # the whole API, read from the schema

    for operation in operations:

        @settings(max_examples=8, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call(base_url=relay_server.url, headers=headers)
            case.validate_response(response, checks=CHECKS)
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body

        call()
