"""Fake Anthropic and Gemini upstreams on loopback (one each per session, reset per test),
channels pointing at them, and the official SDKs as clients of the relay."""

from __future__ import annotations

import pytest

from tests.conftest import make_channel, make_price
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.server import ServerThread
from tests.protocols.openai_tools_fake import LegacyOpenAI

# Prices chosen so charges read plainly: per token 1000 micro-USD in, 2000 out, 100 cached.
PRICE = {"input_usd": "1000", "output_usd": "2000", "cached_input_usd_per_m": "100"}


def charge_micros(*, prompt: int, completion: int, cached: int = 0) -> int:
    return (prompt - cached) * 1000 + cached * 100 + completion * 2000


@pytest.fixture(scope="session")
def _anthropic_server():
    fake = FakeAnthropic(name="a", chunks=4)
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


@pytest.fixture(scope="session")
def _gemini_server():
    fake = FakeGemini(name="g", chunks=4)
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def anthropic_upstream(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def gemini_upstream(_gemini_server) -> FakeGemini:
    _gemini_server.reset()
    return _gemini_server


@pytest.fixture(scope="session")
def _openai_server():
    fake = LegacyOpenAI(name="o", chunks=4)
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def openai_upstream(_openai_server) -> LegacyOpenAI:
    _openai_server.reset()
    return _openai_server


@pytest.fixture
def upstreams(openai_upstream, anthropic_upstream, gemini_upstream):
    return {"openai": openai_upstream, "anthropic": anthropic_upstream, "gemini": gemini_upstream}


def serve_model(kind: str, upstreams: dict, *, model: str = "m-test", name: str | None = None, **channel):
    """Price `model` and make a channel of provider type `kind` serve it from its fake."""
    fake = upstreams[kind]
    base_url = fake.url + "/v1" if kind == "openai" else fake.url
    upstream_name = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}[kind]
    make_price(model, PRICE["input_usd"], PRICE["output_usd"], cached_input_usd_per_m=PRICE["cached_input_usd_per_m"])
    return make_channel(
        name or f"{kind}-channel",
        base_url,
        models=[(model, upstream_name)],
        provider_type=kind,
        api_key=f"sk-{kind}-upstream",
        **channel,
    )


@pytest.fixture
def anthropic_client(relay, alice):
    import anthropic

    return anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0, timeout=30)


def ledger_charge(request_id: str) -> int:
    """The micro-units one request was charged (a positive number), from the ledger."""
    from billing.models import LedgerEntry
    from tests.conftest import flush_logs

    flush_logs()
    entries = list(LedgerEntry.objects.filter(request_id=request_id))
    assert len(entries) == 1, entries
    return -entries[0].amount_micros
