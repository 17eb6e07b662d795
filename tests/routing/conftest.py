"""Routing tests: fresh routing state per test, fake vendors on loopback, helpers."""

from __future__ import annotations

import threading

import pytest

from tests.fakes.server import ServerThread


@pytest.fixture(autouse=True)
def _fresh_routing(settings):
    """Routing caches start empty. Reward logs still queued belong to another test's database:
    dropped (tests that read rewards flush them while their database is up: `flush_all`)."""
    from channels import strategies, thompson

    thompson.reward_logs.discard()
    strategies.rng_seed(None)
    thompson.forget()
    yield
    thompson.reward_logs.discard()
    thompson.forget()


@pytest.fixture(scope="session")
def serve_app():
    """Start any ASGI app on loopback for the rest of the session; all are stopped together
    at the end (each stop may wait a second for the relay's kept-alive connections)."""
    started = []

    def start(app):
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    stoppers = [threading.Thread(target=server.stop) for server in started]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


@pytest.fixture(scope="session")
def _upstream_pool():
    return []


@pytest.fixture
def upstreams(_upstream_pool, serve_app):
    """`upstreams("a", "b", chunks=1)` -> fake OpenAI upstreams named so, fresh for this test:
    taken from a pool shared by the session rather than started anew."""
    from tests.fakes.openai_upstream import FakeOpenAI

    taken = []

    def take(*names: str, chunks: int = 2):
        fakes = []
        for name in names:
            if len(taken) == len(_upstream_pool):
                fake = FakeOpenAI()
                fake.url = serve_app(fake).url
                _upstream_pool.append(fake)
            fake = _upstream_pool[len(taken)]
            fake.reset()
            fake.set_mode("ok", name=name, chunks=chunks)
            taken.append(fake)
            fakes.append(fake)
        return fakes

    yield take
    for fake in taken:
        fake.reset()


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
    from channels.health.board import board
    from channels.thompson import reward_logs_flush
    from tests.conftest import flush_logs

    flush_logs()
    reward_logs_flush()
    board.flush()
