"""Channels tests: the fake vendor (balance endpoints, price document) on loopback. The routing
state they share with every test is reset by the top conftest (`_fresh_state`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def _vendor_server(serve_app):
    from tests.channels.fakes import FakeVendor

    fake = FakeVendor()
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def vendor(_vendor_server):
    url = _vendor_server.url
    _vendor_server.__init__()  # fresh state, same server
    _vendor_server.url = url
    return _vendor_server
