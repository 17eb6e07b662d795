"""Channels tests: the fake vendor (balance endpoints, price document) on loopback. The routing
state they share with every test is reset by the top conftest (`_fresh_state`)."""

from __future__ import annotations

import pytest

from tests.fakes.vendor import FakeVendor


@pytest.fixture(scope="session")
def _vendor_server(serve_app):
    fake = FakeVendor()
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def vendor(_vendor_server):
    _vendor_server.reset()
    return _vendor_server
