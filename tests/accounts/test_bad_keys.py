"""10,000 random and malformed keys against /v1: every one is a 401 in the endpoint's own error
shape, never a 5xx. In-process ASGI (the whole relay app, the real database) to stay fast."""

from __future__ import annotations

import asyncio
import os
import random
import string

import httpx
import pytest

from tests.conftest import make_key, make_tenant

COUNT = int(os.environ.get("BAD_KEYS_COUNT", "10000"))
_PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
_LATIN1 = "".join(chr(c) for c in range(0xA0, 0x100))


def _bad_keys(rng: random.Random, real: str, revoked: str):
    """(headers) for each attempt: every shape a client or an attacker might send."""
    shapes = [
        lambda: {"authorization": "Bearer sk-" + "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 64)))},
        lambda: {"authorization": "Bearer " + "".join(rng.choices(_PRINTABLE, k=rng.randint(1, 200))).strip() or "x"},
        lambda: {"authorization": ("Bearer " + "".join(rng.choices(_LATIN1 + "abc", k=rng.randint(1, 50)))).encode("latin-1")},
        lambda: {"authorization": "Bearer " + "A" * rng.randint(1_000, 8_000)},
        lambda: {"authorization": rng.choice(["Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "bearer", "Token sk-x", "", " "])},
        lambda: {"authorization": "Bearer " + real[:-1] + rng.choice("abcdefXYZ0123456789".replace(real[-1], ""))},
        lambda: {"authorization": "Bearer " + real[: rng.randint(1, len(real) - 1)]},
        lambda: {"authorization": "Bearer " + real + rng.choice(["x", " x", "=", "0"])},
        lambda: {"authorization": "Bearer " + revoked},
        lambda: {"x-api-key": "".join(rng.choices(_PRINTABLE, k=rng.randint(1, 100))).strip() or "k"},
        lambda: {"x-api-key": revoked},
        lambda: {},
    ]
    while True:
        yield rng.choice(shapes)()


def _request(rng: random.Random, headers: dict):
    kind = rng.randrange(4)
    if kind == 0:
        return "POST", "/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}, headers, "openai"
    if kind == 1:
        # the model list answers in the shape of the client that asks (docs/protocols.md)
        is_anthropic = any(name.lower() in ("x-api-key", "anthropic-version") for name in headers)
        return "GET", "/v1/models", None, headers, "anthropic" if is_anthropic else "openai"
    if kind == 2:
        return "POST", "/v1/embeddings", {"model": "emb", "input": "x"}, headers, "openai"
    return "POST", "/v1/messages", {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, headers, "anthropic"


@pytest.mark.timeout(300)
def test_ten_thousand_bad_keys_are_all_401_and_never_a_5xx(transactional_db):
    from accounts.services import api_key_revoke
    from relay.asgi import application

    tenant = make_tenant("target")
    real = make_key(tenant).key
    revoked_actor = make_key(tenant)
    from accounts.models import ApiKey

    api_key_revoke(key=ApiKey.objects.get(pk=revoked_actor.key_id))
    rng = random.Random(13)
    keys = _bad_keys(rng, real, revoked_actor.key)
    requests = [_request(rng, next(keys)) for _ in range(COUNT)]

    async def run():
        transport = httpx.ASGITransport(app=application)
        statuses: dict[int, int] = {}
        wrong_shape: list = []
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            semaphore = asyncio.Semaphore(64)

            async def one(method, path, body, headers, protocol):
                async with semaphore:
                    response = await client.request(method, path, json=body, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                payload = response.json()
                if "error" not in payload and "type" not in payload:
                    wrong_shape.append((response.status_code, path, headers, payload))
                    return
                if protocol == "anthropic":
                    ok = payload["type"] == "error" and payload["error"]["type"] == "authentication_error"
                else:
                    ok = payload["error"]["code"] == "invalid_api_key"
                if not ok or "x-request-id" not in response.headers:
                    wrong_shape.append((path, headers, payload))

            await asyncio.gather(*(one(*r) for r in requests))
        return statuses, wrong_shape

    statuses, wrong_shape = asyncio.run(run())
    assert statuses == {401: COUNT}
    assert wrong_shape == []
