"""The upstream client's lean path (providers.httpkit.UpstreamClient): requests go straight to
the transport, with httpx's default headers and the caller's, the query and the timeout, and
without the cookie jar a plain httpx client keeps: an upstream's cookies never reach another
tenant's request (issue 10)."""

from __future__ import annotations

import httpx
import pytest

from providers.base import Timeouts
from providers.httpkit import UpstreamClient, request_whole
from tests.fakes import ServerThread


class CookieSetter:
    """Sets a cookie on every answer and records what each request sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({**headers, ":query": scope["query_string"].decode(), ":path": scope["path"]})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"set-cookie", b"session=tenant-a; Path=/")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


@pytest.fixture
def cookie_server():
    app = CookieSetter()
    with ServerThread(app) as server:
        yield app, server.url


TIMEOUTS = Timeouts(connect_s=2.0, first_byte_s=5.0, idle_s=5.0)


async def test_an_upstreams_cookie_is_never_sent_back(cookie_server):
    app, url = cookie_server
    async with UpstreamClient() as client:
        for key in ("sk-tenant-a", "sk-tenant-b"):
            response = await request_whole(
                client, "POST", url + "/v1/chat/completions", body={"n": 1}, headers={"authorization": f"Bearer {key}"},
                timeouts=TIMEOUTS, api_key=key,
            )
            assert response.status_code == 200 and response.json() == {"ok": True}
    assert [seen.get("cookie") for seen in app.seen] == [None, None]
    assert len(client.cookies) == 0


async def test_a_plain_httpx_client_would_have_sent_it(cookie_server):
    """The property above is the lean path's, not the server's: httpx's own client keeps it."""
    app, url = cookie_server
    async with httpx.AsyncClient() as client:
        await client.post(url + "/x", content=b"{}")
        await client.post(url + "/x", content=b"{}")
    assert app.seen[1].get("cookie") == "session=tenant-a"


async def test_default_headers_the_callers_query_and_body_arrive(cookie_server):
    app, url = cookie_server
    async with UpstreamClient(headers={"user-agent": "TokenHub-test"}) as client:
        for _ in range(2):  # the second time from the parsed-URL memo
            await request_whole(
                client, "POST", url + "/v1/embeddings", body={"input": "x"}, params={"api-version": "2024-10-21"},
                headers={"Accept-Encoding": "identity", "x-api-key": "k"}, timeouts=TIMEOUTS, api_key="k",
            )
    for seen in app.seen:
        assert seen[":path"] == "/v1/embeddings" and seen[":query"] == "api-version=2024-10-21"
        assert seen["user-agent"] == "TokenHub-test"  # the client's default
        assert seen["accept-encoding"] == "identity"  # the caller's wins over the default
        assert seen["x-api-key"] == "k" and seen["content-length"] == str(len(b'{"input":"x"}'))


async def test_what_the_lean_path_does_not_take_goes_through_httpx(cookie_server):
    app, url = cookie_server
    async with UpstreamClient(base_url=url) as client:
        response = await client.post("/relative", json={"a": 1})  # relative URL, JSON: httpx's own path
    assert response.status_code == 200 and app.seen[0][":path"] == "/relative"


async def test_a_refused_connection_is_an_httpx_error_that_names_its_request():
    async with UpstreamClient() as client:
        request = client.build_request("GET", "http://127.0.0.1:9/", timeout=httpx.Timeout(2.0))
        with pytest.raises(httpx.ConnectError) as caught:
            await client.send(request)
    assert caught.value.request is request
