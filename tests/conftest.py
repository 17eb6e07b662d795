"""The cast and the running relay.

- The cast (issue 10, after healthchecks' `hc/test.py`): `alice` owns tenant "alice", `bob` owns
  tenant "bob" (he must never see alice's things), `charlie` is a plain member of alice's tenant.
  Each is a user (verified email `<name>@example.com`, no usable password: tests sign in with
  `login`) with an API key of their tenant; the tenants hold 100 USD credit and 1000 CNY wallet.
  `cast` is the three as a dict. Tests that need another tenant for isolation use bob.
- `relay`: TokenHub's real ASGI app under uvicorn on 127.0.0.1 in a thread, with the test
  database (file SQLite, or PostgreSQL when DATABASE_URL is set) and Redis when REDIS_URL is set.
- Fake upstreams are real HTTP servers on loopback (`tests/fakes`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import httpx
import pytest
from django.conf import settings as django_settings

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_tools import LegacyOpenAI
from tests.fakes.server import ServerThread


@pytest.fixture(scope="session")
def relay_server(django_db_setup, django_db_blocker):
    from relay.asgi import application

    server = ServerThread(application)
    with django_db_blocker.unblock():
        server.start()
    yield server
    server.stop()
    from observability.writer import discard_all

    discard_all()  # whatever is left belongs to a test database about to be dropped
    from common.db import loop_connections_close

    loop_connections_close()
    with django_db_blocker.unblock():
        _disconnect_other_threads()


def _disconnect_other_threads() -> None:
    """The relay's worker threads keep their own connections; PostgreSQL will not drop the
    test database while they are open."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    """Nothing cached by one test reaches the next. Reward logs still queued belong to another
    test's database: dropped (tests that read rewards flush them while their database is up:
    `flush_all`)."""
    from accounts import keycache, limits
    from billing import ratecard
    from channels import netguard, strategies, thompson
    from channels.admin import records_forget
    from channels.health.board import board
    from channels.table import table_invalidate
    from vault.services import vault_refresh

    settings.TOKENHUB_UPSTREAM_ALLOW_CIDRS = ["127.0.0.0/8"]
    if django_settings.REDIS_URL:
        import redis

        redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    keycache.clear()
    ratecard.invalidate()
    limits.counters.clear()
    board.clear()
    netguard.forget()
    table_invalidate()
    records_forget()
    vault_refresh()  # the vault's row may be gone with the last test's data
    thompson.reward_logs.discard()
    strategies.rng_seed(None)
    thompson.forget()
    yield
    board.clear()
    thompson.reward_logs.discard()
    thompson.forget()


@dataclass
class Actor:
    """Someone holding an API key of `tenant`; in the cast also a user with `role` there."""

    tenant: object
    key: str
    key_id: int
    user: object = None
    role: str = ""
    email: str = ""


def make_tenant(name: str, *, group: str = "default", credit: str | None = "100", wallet: str | None = "1000"):
    from accounts.services import tenant_create

    from billing.services import balance_credit

    tenant = tenant_create(name=name, group=group)
    if credit:
        balance_credit(tenant_id=tenant.pk, kind="credit", amount=credit, idempotency_key=f"test:{name}:credit")
    if wallet:
        balance_credit(tenant_id=tenant.pk, kind="wallet", amount=wallet, idempotency_key=f"test:{name}:wallet")
    return tenant


def make_key(tenant, **overrides) -> Actor:
    from accounts.services import api_key_create

    key, secret = api_key_create(tenant=tenant, **overrides)
    return Actor(tenant, secret, key.pk)


def make_channel(name: str, base_url: str, *, models=("gpt-test",), provider_type: str = "openai", **overrides):
    from channels.services import channel_create

    return channel_create(
        name=name,
        provider_type=provider_type,
        base_url=base_url,
        models=[m if isinstance(m, tuple) else (m, m) for m in models],
        **overrides,
    )


def make_price(model: str, input_usd: str = "1", output_usd: str = "2", **overrides):
    from billing.services import price_set

    return price_set(model=model, input_usd_per_m=input_usd, output_usd_per_m=output_usd, **overrides)


def make_member(username: str, tenant, *, role: str, **key_overrides) -> Actor:
    """A user with a verified email and `role` in `tenant`, and an API key they made there."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth import get_user_model

    from accounts.services import api_key_create, membership_add

    email = f"{username}@example.com"
    user = get_user_model().objects.create_user(username=username, email=email)  # no password: hashing is slow, login() is direct
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    membership_add(user=user, tenant=tenant, role=role)
    key, secret = api_key_create(tenant=tenant, name=f"{username}'s key", created_by=user, **key_overrides)
    return Actor(tenant, secret, key.pk, user, role, email)


@pytest.fixture
def alice(transactional_db) -> Actor:
    return make_member("alice", make_tenant("alice"), role="owner")


@pytest.fixture
def bob(transactional_db) -> Actor:
    return make_member("bob", make_tenant("bob"), role="owner")


@pytest.fixture
def charlie(alice) -> Actor:
    return make_member("charlie", alice.tenant, role="member")


@pytest.fixture
def cast(alice, bob, charlie) -> dict[str, Actor]:
    return {"alice": alice, "bob": bob, "charlie": charlie}


@pytest.fixture
def relay(relay_server, transactional_db):
    yield relay_server
    settle_background()
    flush_logs()


def settle_background(timeout_s: float = 10.0) -> None:
    """Wait until the relay has finished what requests left running (stream settlements)."""
    import time

    from common import background

    deadline = time.monotonic() + timeout_s
    while background.pending() and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def openai_client(relay, alice):
    import openai

    return openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def upstream_factory():
    """Start fake OpenAI upstreams on loopback; all stopped at the end of the session."""
    from tests.fakes.openai_upstream import FakeOpenAI

    started: list = []

    def start(**options):
        fake = FakeOpenAI(**options)
        server = ServerThread(fake)
        server.start()
        fake.url = server.url
        started.append(server)
        return fake

    yield start
    for server in started:
        server.stop()


def subprocess_database_url() -> str:
    """DATABASE_URL of the test database, for the relay or a command in a subprocess."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings["USER"] or "postgres"
    return f"postgres://{user}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"


def flush_logs() -> None:
    from observability.writer import flush_all

    settle_background()
    flush_all()


# The portal's password for people who sign up through the pages.
PORTAL_PASSWORD = "a long and unusual passphrase 42"


@pytest.fixture
def login(client):
    def sign_in(person: Actor):
        client.force_login(person.user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return sign_in


os.environ.setdefault("TOKENHUB_TEST", "1")


# --- fake upstreams shared by every directory (tests/fakes), each a real server on loopback.
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


@pytest.fixture(scope="session")
def _openai_server():
    fake = LegacyOpenAI(name="o", chunks=4)
    with ServerThread(fake) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def anthropic_upstream(_anthropic_server) -> FakeAnthropic:
    """The session's fake Anthropic, reset for this test."""
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def gemini_upstream(_gemini_server) -> FakeGemini:
    _gemini_server.reset()
    return _gemini_server


@pytest.fixture
def openai_upstream(_openai_server) -> LegacyOpenAI:
    """The session's fake OpenAI that also knows tool calls and the legacy completions."""
    _openai_server.reset()
    return _openai_server


@pytest.fixture
def protocol_upstreams(openai_upstream, anthropic_upstream, gemini_upstream) -> dict:
    """One fake upstream per protocol, by provider type (`upstreams` is the factory of fake
    OpenAI upstreams)."""
    return {"openai": openai_upstream, "anthropic": anthropic_upstream, "gemini": gemini_upstream}


def chat(relay, key: str, *, model: str = "gpt-test", mode: str | None = None, **extra):
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
    """Request logs, reward logs and the health board's batched writes, all in the database."""
    from channels.health.board import board
    from channels.thompson import reward_logs_flush

    flush_logs()
    reward_logs_flush()
    board.flush()
