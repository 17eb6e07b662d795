"""The web layer of /v1 (routing.web): every route of the table answers through it, what matches
no route gets our 404 / 405, CORS and x-request-id are on every answer, and streams go out with
the chunks that are ready joined into one message, never held back while the producer waits,
and cancelled when the client leaves."""

from __future__ import annotations

import asyncio
import socket

import httpx
import orjson
import pytest

from tests.conftest import make_channel, make_price
from tests.fakes.scripted_upstream import Scripted
from tests.fakes.server import ServerThread

ORIGIN = {"origin": "https://chat.example.org"}


def _concrete(path: str) -> str:
    return path.replace("{model_id:path}", "gpt-test")


def _routes():
    from routing.app import ROUTES

    return ROUTES


@pytest.mark.parametrize("route", _routes(), ids=lambda route: route.path)
def test_every_route_in_the_table_answers_through_the_lean_entry(relay, transactional_db, route):
    method = "POST" if "POST" in route.methods else "GET"
    answer = httpx.request(method, relay.url + _concrete(route.path), headers=ORIGIN, json={} if method == "POST" else None)

    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "Origin" in answer.headers["vary"]
    if route.path in ("/healthz", "/readyz", "/metrics"):
        assert answer.status_code == 200
    else:  # reached its view: the key is asked for, in the route's protocol
        assert answer.status_code == 401
        body = answer.json()
        code = body["error"]["type"] if body.get("type") == "error" else body["error"]["code"]
        assert code in ("invalid_api_key", "authentication_error")


def test_an_unknown_path_is_our_404_with_cors_and_a_request_id(relay, transactional_db):
    answer = httpx.post(relay.url + "/v1/no/such/thing", headers=ORIGIN, json={})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_url"
    assert answer.json()["error"]["message"] == "Unknown endpoint POST /v1/no/such/thing."
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in answer.headers["access-control-expose-headers"]


def test_a_get_route_answers_head_and_names_both_in_allow(relay, transactional_db):
    head = httpx.head(relay.url + "/healthz")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(b'{"status":"ok"}'))
    refused = httpx.delete(relay.url + "/healthz")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["message"] == "DELETE is not allowed on /healthz; use GET, HEAD."


def test_a_trailing_slash_is_redirected_to_the_route(relay, transactional_db):
    answer = httpx.post(relay.url + "/v1/chat/completions/", json={})
    assert answer.status_code == 307
    assert answer.headers["location"] == relay.url + "/v1/chat/completions"
    assert answer.headers["x-request-id"].startswith("req_")


def test_a_preflight_is_answered_for_any_path_and_refuses_private_network_access(relay, transactional_db):
    asked = {**ORIGIN, "access-control-request-method": "POST"}
    anywhere = httpx.options(relay.url + "/v1/not-a-route", headers=asked)
    assert anywhere.status_code == 200 and anywhere.text == "OK"
    assert anywhere.headers["access-control-max-age"] == "600"
    assert anywhere.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert anywhere.headers["x-request-id"].startswith("req_")
    private = httpx.options(relay.url + "/v1/chat/completions", headers={**asked, "access-control-request-private-network": "true"})
    assert private.status_code == 400 and private.text == "Disallowed CORS private-network"
    wrong_method = httpx.options(relay.url + "/v1/chat/completions", headers={**ORIGIN, "access-control-request-method": "PUT"})
    assert wrong_method.status_code == 400 and wrong_method.text == "Disallowed CORS method"


def test_an_options_request_that_is_no_preflight_is_a_405(relay, transactional_db):
    answer = httpx.options(relay.url + "/v1/chat/completions")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert "access-control-allow-origin" not in answer.headers and answer.headers["vary"] == "Origin"


# --- streams over a real socket ------------------------------------------------------------------

EVENTS = 20


@pytest.fixture(scope="module")
def one_shot():
    """An upstream that sends a whole SSE stream in one write: the relay reads it at once."""
    fake = Scripted()
    server = ServerThread(fake).start()
    fake.url = server.url
    yield fake
    server.stop()


def _sse_stream() -> bytes:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        obj = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    pieces = [chunk({"role": "assistant", "content": ""})]
    pieces += [chunk({"content": f"w{i} "}) for i in range(EVENTS - 2)]
    pieces.append(chunk({}, "stop"))
    return b"".join(pieces) + b"data: [DONE]\n\n"


def _chunked_frames(sock: socket.socket) -> tuple[bytes, list[bytes]]:
    """The head and the chunked body's frames, read off the socket as the relay framed them."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    frames: list[bytes] = []
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        if size == 0:
            return head, frames
        frames.append(rest[:size])
        rest = rest[size + 2 :]


def test_events_that_arrive_together_leave_together(relay, alice, one_shot):
    make_price("gpt-test", "1", "2")
    make_channel("one-shot", one_shot.url + "/v1", models=["gpt-test"])
    one_shot.answer(200, _sse_stream(), content_type="text/event-stream")
    body = orjson.dumps({"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    host, port = relay.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {alice.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head, frames = _chunked_frames(sock)

    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
    events = b"".join(frames).split(b"\n\n")[:-1]
    assert len(events) == EVENTS + 1 and events[-1] == b"data: [DONE]"
    assert len(frames) <= 3  # one message per upstream read, not one per event (21 here)


# --- streams through the ASGI callable ---------------------------------------------------------


def _app(chunks_of):
    from routing.replies import StreamReply
    from routing.web import App, Cors, Route

    async def view(_request):
        return StreamReply(chunks_of())

    def never(*_args):
        raise AssertionError("the test route matches")

    cors = Cors(origins=["*"], methods=["GET"], expose_headers=[], max_age=600)
    return App([Route.of("/s", view, ["GET"])], cors, not_found=never, method_not_allowed=never)


def _scope() -> dict:
    return {"type": "http", "method": "GET", "path": "/s", "headers": [], "query_string": b"", "asgi": {"spec_version": "2.3"}}


def test_ready_chunks_are_joined_and_none_waits_for_the_producer():
    """Three chunks ready at once go in one message; the producer then waits until the client
    has that message (the test's send opens its gate), so a layer that held them back while
    waiting for the producer would never finish."""

    async def scenario():
        gate = asyncio.Event()
        bodies: list[tuple[bytes, bool]] = []

        async def chunks():
            for part in (b"a", b"b", b"c"):
                yield part
            await gate.wait()  # the upstream's next read
            yield b"d"
            yield b"e"

        async def receive():
            await asyncio.Event().wait()  # the client never leaves

        async def send(message):
            if message["type"] == "http.response.body":
                bodies.append((message["body"], message.get("more_body", False)))
                gate.set()

        await asyncio.wait_for(_app(chunks)(_scope(), receive, send), timeout=10)
        return bodies

    assert asyncio.run(scenario()) == [(b"abc", True), (b"de", False)]


@pytest.mark.parametrize("how", ["disconnect", "send raises"])
def test_a_client_that_leaves_mid_stream_cancels_the_producer(how):
    async def scenario():
        left = asyncio.Event()
        closed: list[str] = []
        sent: list[bytes] = []

        async def chunks():
            try:
                yield b"first"
                await asyncio.Event().wait()  # an upstream that never sends again
                yield b"never"
            except asyncio.CancelledError:
                closed.append("cancelled")
                raise
            except GeneratorExit:
                closed.append("closed")
                raise

        async def receive():
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] != "http.response.body":
                return
            if how == "send raises" and sent:
                raise OSError("the client went away")
            sent.append(message["body"])
            if how == "disconnect":
                left.set()

        async def slow_chunks():  # for "send raises": a second chunk, then the upstream waits
            try:
                yield b"first"
                await asyncio.sleep(0)
                yield b"second"
                await asyncio.Event().wait()
            except GeneratorExit:
                closed.append("closed")
                raise
            except asyncio.CancelledError:
                closed.append("cancelled")
                raise

        app = _app(chunks if how == "disconnect" else slow_chunks)
        await asyncio.wait_for(app(_scope(), receive, send), timeout=10)
        return sent, closed

    sent, closed = asyncio.run(scenario())
    assert sent == [b"first"] and closed and closed[0] in ("cancelled", "closed")
