"""Provider tests need no Django: they run with `-p no:django` as well as in the full suite."""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import httpx
import pytest

from providers.base import Target, Timeouts
from tests.fakes import FakeOpenAI, ServerThread


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    """Replaces the root conftest's Django state reset: nothing of Django's is used here."""


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[tuple[FakeOpenAI, ServerThread]]:
    fake = FakeOpenAI(name="a", chunks=5)
    with ServerThread(fake) as server:
        yield fake, server


@pytest.fixture
def upstream(_upstream_server: tuple[FakeOpenAI, ServerThread]) -> FakeOpenAI:
    """The session's fake OpenAI, back in mode "ok" with nothing recorded."""
    fake, _ = _upstream_server
    fake.reset()
    return fake


@pytest.fixture
def upstream_url(_upstream_server: tuple[FakeOpenAI, ServerThread]) -> str:
    return _upstream_server[1].url


@pytest.fixture
def target(upstream_url: str) -> Target:
    return Target(
        base_url=upstream_url + "/v1", upstream_model="gpt-4o-mini", api_key="sk-test-secret-123"
    )


@pytest.fixture
def timeouts() -> Timeouts:
    return Timeouts(connect_s=2.0, first_byte_s=5.0, idle_s=5.0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
