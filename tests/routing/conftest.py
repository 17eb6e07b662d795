"""Routing tests: fresh routing state per test, fake vendors on loopback, helpers."""

from __future__ import annotations

import pytest

from tests.fakes.server import ServerThread


@pytest.fixture(autouse=True)
def _fresh_routing(settings):
    """Routing caches start empty. Reward logs still queued belong to another test's database:
    dropped (tests that read rewards flush them while their database is up: `flush_all`)."""
    from routing import strategies, thompson

    thompson.reward_logs.discard()
    strategies.forget()
    strategies.rng_seed(None)
    thompson.forget()
    yield
    thompson.reward_logs.discard()
    thompson.forget()


@pytest.fixture(scope="session")
def serve_app():
    """Start any ASGI app on loopback for the rest of the session."""
    started = []

    def start(app):
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def _vendor_server(serve_app):
    from tests.routing.fakes import FakeVendor

    fake = FakeVendor()
    fake.url = serve_app(fake).url
    return fake


@pytest.fixture
def vendor(_vendor_server):
    url = _vendor_server.url
    _vendor_server.__init__()  # fresh state, same server
    _vendor_server.url = url
    return _vendor_server


def chat(relay, key: str, *, model: str = "gpt-test", mode: str | None = None, **extra):
    import httpx

    headers = {"authorization": f"Bearer {key}"}
    if mode is not None:
        headers["x-tokenhub-mode"] = mode
    return httpx.post(
        relay.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, **extra},
        headers=headers,
        timeout=30,
    )


def flush_all() -> None:
    from routing.health import board
    from routing.thompson import reward_logs_flush
    from tests.conftest import flush_logs

    flush_logs()
    reward_logs_flush()
    board.flush()
