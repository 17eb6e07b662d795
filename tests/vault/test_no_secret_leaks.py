"""Secrets stay secret: over a run of real requests (successes, streams, failures, a lying
upstream that echoes its credential back, bad keys), every captured log line, every response
body and header, every admin page and /metrics are searched for each upstream credential and
customer key used. Zero hits."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest
from django.contrib import admin
from django.contrib.auth.models import User

from tests.conftest import flush_logs, make_channel, make_key, make_price
from tests.fakes.server import ServerThread

UPSTREAM_KEY = "sk-upstream-credential-0123456789abcdef"
ECHO_KEY = "sk-echoed-credential-fedcba9876543210"


class EchoingUpstream:
    """A lying upstream: every error it returns quotes the credential it was sent."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        while (await receive()).get("more_body"):
            pass
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        status = 400  # a client error: passed on to the customer, the channel is not cooled
        body = json.dumps({"error": {"message": f"key {auth} rejected ({auth[7:]})", "type": "invalid_request_error", "code": auth}})
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"x-echo", auth.encode())]})
        await send({"type": "http.response.body", "body": body.encode()})


@pytest.fixture
def echoing():
    app = EchoingUpstream()
    server = ServerThread(app).start()
    server.fake = app
    yield server
    server.stop()


def test_no_credential_or_customer_key_appears_anywhere(relay, alice, bob, upstream_factory, echoing, caplog, client):
    caplog.set_level(logging.DEBUG)
    upstream = upstream_factory(name="leak")
    make_price("gpt-test", "1", "2")
    make_price("gpt-echo", "1", "2")
    make_channel("good", upstream.url + "/v1", models=["gpt-test"], api_key=UPSTREAM_KEY)
    make_channel("echo", echoing.url + "/v1", models=["gpt-echo"], api_key=ECHO_KEY)
    bobs = make_key(bob.tenant, name="bob's gpt-test key", allowed_models=["gpt-test"])
    secrets = {"upstream": UPSTREAM_KEY, "echoed upstream": ECHO_KEY, "alice": alice.key, "bob": bobs.key}

    seen: list[str] = []
    oa = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    for _ in oa.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True):
        pass
    with httpx.Client(base_url=relay.url, timeout=30) as http:
        attempts = [
            ("POST", "/v1/chat/completions", alice.key, {"model": "gpt-echo", "messages": [{"role": "user", "content": "x"}]}),
            ("POST", "/v1/chat/completions", alice.key, {"model": "gpt-echo", "messages": [{"role": "user", "content": "x"}], "stream": True}),
            ("POST", "/v1/embeddings", alice.key, {"model": "gpt-echo", "input": "x"}),
            ("POST", "/v1/messages", alice.key, {"model": "gpt-echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            ("POST", "/v1/chat/completions", bobs.key, {"model": "gpt-echo", "messages": [{"role": "user", "content": "x"}]}),
            ("POST", "/v1/chat/completions", alice.key + "x", {"model": "gpt-test", "messages": []}),
            ("POST", "/v1/chat/completions", alice.key, {"model": "nope", "messages": []}),
            ("POST", "/v1/chat/completions", alice.key, "not json"),
            ("GET", "/v1/models", bobs.key, None),
        ]
        for method, path, key, body in attempts:
            content = body.encode() if isinstance(body, str) else (json.dumps(body).encode() if body is not None else None)
            response = http.request(method, path, content=content, headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
            seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        seen.append(http.get("/metrics").text)
        seen.append(http.get("/healthz").text + http.get("/readyz").text)
    flush_logs()

    User.objects.create_superuser("root", password="a long root password")
    client.force_login(User.objects.get(username="root"))
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        listing = client.get("/admin/%s/%s/" % info)
        seen.append(listing.content.decode(errors="replace"))
        for obj in model_admin.get_queryset(listing.wsgi_request)[:5]:
            seen.append(client.get(f"/admin/{info[0]}/{info[1]}/{obj.pk}/change/").content.decode(errors="replace"))
    seen.append(caplog.text)
    seen.extend(repr(record.__dict__) for record in caplog.records)

    hits = {name: sum(text.count(secret) for text in seen) for name, secret in secrets.items()}
    assert hits == {name: 0 for name in secrets}
    # the secrets were really used: sent upstream, echoed back, and the customer keys answered
    assert upstream.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert echoing.fake.calls >= 4
    assert any(text.startswith("200 ") for text in seen) and any(text.startswith("400 ") and "rejected" in text for text in seen)
