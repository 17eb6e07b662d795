"""Channels tests: the fake vendor (balance endpoints, price document) on loopback. The routing
state they share with every test is reset by the top conftest (`_fresh_state`)."""

from __future__ import annotations

import pytest

from tests.fakes.vendor import FakeVendor
from tests.relay.procs import start_web


@pytest.fixture(scope="session")
def _vendor_server(serve_app):
    fake = FakeVendor()
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def vendor(_vendor_server):
    _vendor_server.reset()
    return _vendor_server


@pytest.fixture
def webs(tmp_path, transactional_db):
    """Two real web processes on the test database (their URLs); stopped after the test."""
    started = []
    try:
        for name in ("web-a", "web-b"):
            started.append(start_web(tmp_path, name))
        yield [url for _, url in started]
    finally:
        for proc, _ in started:
            proc.stop()
