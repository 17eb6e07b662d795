"""The upstream transport (providers.wire, built by netpin.pinned_async_transport): its pool, how
it reads each kind of answer, flow control, cancellation, TLS and refused addresses.

Real sockets only: a raw HTTP/1.1 server on asyncio (`_Upstream`) whose answers each test
scripts byte for byte, so the transport meets the framings and misbehaviours real upstreams show.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import tempfile

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from providers.netpin import AddressRefused, parse_networks, pinned_async_transport, pinned_sync_transport

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'
LOOPBACK = parse_networks(["127.0.0.0/8"])


class _Seen:
    """One request as the server read it."""

    def __init__(self, head: bytes, body: bytes, connection: int) -> None:
        self.head = head
        self.body = body
        self.connection = connection
        lines = head.decode("latin-1").split("\r\n")
        self.method, self.target, _ = lines[0].split(" ")
        self.headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}


class _Upstream:
    """A raw HTTP/1.1 server: reads each request (content-length or chunked body) and calls
    `answer(seen, writer)`, which writes whatever bytes the test wants; an answer returning
    False closes the connection."""

    def __init__(self, answer=None) -> None:
        self.answer = answer or _plain(OK)
        self.requests: list[_Seen] = []
        self.connections = 0
        self.hung_up = 0  # connections the client closed
        self.closed = 0  # connections closed, by either side
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> _Upstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=getattr(self, "tls", None))
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()

    def url(self, path: str = "/v1/models", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen = _Seen(head, b"", number)
                if "content-length" in seen.headers:
                    seen.body = await reader.readexactly(int(seen.headers["content-length"]))
                elif seen.headers.get("transfer-encoding") == "chunked":
                    seen.body = await _read_chunked(reader)
                self.requests.append(seen)
                if await self.answer(seen, writer) is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up += 1
        finally:
            writer.close()
            self.closed += 1


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return b"".join(part[:-2] for part in parts)


def _plain(data: bytes, *, close: bool = False):
    async def answer(seen, writer):
        writer.write(data)
        await writer.drain()
        return not close

    return answer


def _client(*, max_connections: int = 10, keepalive_expiry: float = 30.0, **options) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=keepalive_expiry)
    resolver = options.pop("resolver", None)
    verify = options.pop("verify", True)
    extra = {} if resolver is None else {"resolver": resolver}
    transport = pinned_async_transport(allow=lambda: LOOPBACK, limits=limits, verify=verify, **extra)
    return httpx.AsyncClient(transport=transport, trust_env=False, **options)


async def _eventually(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


# the pool


async def test_a_kept_alive_connection_is_reused():
    async with _Upstream() as upstream, _client() as client:
        for _ in range(3):
            assert (await client.get(upstream.url())).json() == {"ok": True}
    assert upstream.connections == 1
    assert upstream.requests[0].headers["host"] == f"127.0.0.1:{upstream.port}"


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused():
    async with _Upstream(_plain(OK, close=True)) as upstream, _client() as client:
        for number in range(1, 4):
            assert (await client.get(upstream.url())).json() == {"ok": True}
            await _eventually(lambda: upstream.closed == 2 * number - 1)
            await asyncio.sleep(0.05)  # the close reaches the client's socket
            # a POST is never sent again: it works only because the dead connection was not used
            assert (await client.post(upstream.url(), content=b"{}")).json() == {"ok": True}
            await _eventually(lambda: upstream.closed == 2 * number)
            await asyncio.sleep(0.05)
    assert upstream.connections == 6
    assert [seen.method for seen in upstream.requests] == ["GET", "POST"] * 3


async def test_an_answer_saying_connection_close_does_not_keep_its_connection():
    answer = OK.replace(b"content-length", b"connection: close\r\ncontent-length")
    async with _Upstream(_plain(answer)) as upstream, _client() as client:
        for _ in range(2):
            assert (await client.get(upstream.url())).json() == {"ok": True}
    assert upstream.connections == 2


async def test_a_connection_past_its_keep_alive_expiry_is_not_reused():
    async with _Upstream() as upstream, _client(keepalive_expiry=0.01) as client:
        for _ in range(3):
            assert (await client.get(upstream.url())).json() == {"ok": True}
            await asyncio.sleep(0.05)
    assert upstream.connections == 3


async def test_more_requests_than_connections_wait_for_one_and_all_are_answered():
    async with _Upstream() as upstream, _client(max_connections=2) as client:
        answers = await asyncio.gather(*(client.get(upstream.url()) for _ in range(12)))
    assert [a.json() for a in answers] == [{"ok": True}] * 12
    assert upstream.connections == 2


async def test_a_request_waiting_for_a_connection_past_the_pool_timeout_fails():
    held = asyncio.Event()

    async def never_ends(seen, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome")
        held.set()
        await asyncio.sleep(30)

    async with _Upstream(never_ends) as upstream, _client(max_connections=1) as client:
        async with client.stream("GET", upstream.url()):
            await held.wait()
            with pytest.raises(httpx.PoolTimeout):
                await client.get(upstream.url(), timeout=httpx.Timeout(5.0, pool=0.05))
    assert upstream.connections == 1


async def test_a_request_resent_after_an_idle_hang_up_is_only_an_idempotent_one():
    """The upstream reads the next request on a kept-alive connection and hangs up without an
    answer: a GET is sent once more on a new connection; a POST is not (it may have run)."""

    async def hang_up_on_the_second(seen, writer):
        if seen.connection == 1 and len(upstream.requests) % 2 == 0:
            return False
        writer.write(OK)
        return True

    async with _Upstream(hang_up_on_the_second) as upstream, _client() as client:
        assert (await client.get(upstream.url())).json() == {"ok": True}
        assert (await client.get(upstream.url())).json() == {"ok": True}
        assert [seen.connection for seen in upstream.requests] == [1, 1, 2]
    async with _Upstream(hang_up_on_the_second) as upstream, _client() as client:
        assert (await client.post(upstream.url(), content=b"{}")).json() == {"ok": True}
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(upstream.url(), content=b"{}")
        assert [seen.connection for seen in upstream.requests] == [1, 1]


async def test_closing_the_client_closes_its_pooled_connections():
    async with _Upstream() as upstream:
        async with _client() as client:
            assert (await client.get(upstream.url())).json() == {"ok": True}
        await _eventually(lambda: upstream.hung_up == 1)


# answers


@pytest.mark.parametrize(
    "answer, reused",
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello, world", True),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello, world", False),  # ends when the connection does
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello, world", True),
    ],
    ids=["content-length", "chunked", "until-close", "interim-100"],
)
async def test_each_framing_of_an_answer_is_read_whole(answer, reused):
    async with _Upstream(_plain(answer, close=not reused)) as upstream, _client() as client:
        for _ in range(2):
            response = await client.get(upstream.url())
            assert (response.status_code, response.content) == (200, b"hello, world")
    assert upstream.connections == (1 if reused else 2)


async def test_answers_without_a_body_end_at_their_head():
    async def by_path(seen, writer):
        if seen.target == "/head":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n")
        elif seen.target == "/204":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 999\r\n\r\n")
        return True

    async with _Upstream(by_path) as upstream, _client() as client:
        head = await client.head(upstream.url("/head"))
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "999")
        for path, status in (("/204", 204), ("/304", 304), ("/204", 204)):
            response = await client.get(upstream.url(path))
            assert (response.status_code, response.content) == (status, b"")
    assert upstream.connections == 2  # after HEAD a new one; 204 and 304 keep theirs


async def test_a_gzip_answer_is_decoded():
    data = gzip.compress(b'{"ok":true}')
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data)
    async with _Upstream(_plain(answer)) as upstream, _client() as client:
        assert (await client.get(upstream.url())).json() == {"ok": True}


async def test_an_answer_cut_in_its_body_is_a_protocol_error_and_its_connection_goes():
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"
    async with _Upstream(_plain(answer, close=True)) as upstream, _client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(upstream.url())
    async with _Upstream(_plain(b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n")) as upstream, _client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(upstream.url())


async def test_stream_pieces_arrive_as_they_are_sent():
    more = asyncio.Event()

    async def two_pieces(seen, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst.\r\n")
        await more.wait()
        writer.write(b"7\r\nsecond.\r\n0\r\n\r\n")
        return True

    async with _Upstream(two_pieces) as upstream, _client() as client:
        async with client.stream("POST", upstream.url(), json={"stream": True}) as response:
            pieces = response.aiter_bytes()
            assert await pieces.__anext__() == b"first."  # before the rest was even written
            more.set()
            assert [piece async for piece in pieces] == [b"second."]
        assert (await client.get(upstream.url())).status_code == 200
    assert upstream.connections == 1  # read to its end: the connection was kept


async def test_a_stream_closed_early_closes_its_connection():
    async def endless(seen, writer):
        if seen.method == "GET":
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"5\r\nmore.\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with _Upstream(endless) as upstream, _client() as client:
        async with client.stream("POST", upstream.url(), json={}) as response:
            async for piece in response.aiter_bytes():
                assert piece.startswith(b"more.")
                break
        await _eventually(lambda: upstream.hung_up == 1)  # the client let go of it
        assert (await client.get(upstream.url())).json() == {"ok": True}
    assert upstream.connections == 2


async def test_a_fast_upstream_cannot_fill_memory_while_the_reader_waits():
    """64 MiB sent as fast as possible to a reader that takes one piece and waits: the sender
    blocks (the transport stopped reading: at most kernel buffers and the bound are taken),
    and everything still arrives once the reader goes on."""
    size = 64 * 1024 * 1024
    state = {"sent_all": False}
    block = b"x" * (1024 * 1024)

    async def flood(seen, writer):
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        state["sent_all"] = True
        return True

    async with _Upstream(flood) as upstream, _client() as client:
        async with client.stream("GET", upstream.url()) as response:
            stream = response.aiter_raw()
            received = len(await stream.__anext__())
            writer = upstream.writers[0]
            last = -1
            for _ in range(100):  # until the sender stalls with bytes it cannot send
                await asyncio.sleep(0.1)
                now = writer.transport.get_write_buffer_size()
                if now == last and now > 0:
                    break
                last = now
            assert not state["sent_all"]
            async for piece in stream:
                received += len(piece)
        assert received == size and state["sent_all"]
        assert (await client.get(upstream.url())).status_code == 200
    assert upstream.connections == 1


# requests


async def test_a_streamed_request_body_is_sent_chunked_and_a_sized_one_as_is():
    async def parts():
        for part in (b"one,", b"two,", b"three"):
            yield part

    async with _Upstream() as upstream, _client() as client:
        await client.post(upstream.url(), content=parts())
        await client.post(upstream.url(), files={"file": ("a.wav", b"RIFF....", "audio/wav")})
        await client.post(upstream.url(), content=b"plain")
    chunked, multipart, plain = upstream.requests
    assert chunked.headers["transfer-encoding"] == "chunked" and chunked.body == b"one,two,three"
    assert int(multipart.headers["content-length"]) == len(multipart.body) and b"RIFF...." in multipart.body
    assert plain.body == b"plain"
    assert upstream.connections == 1


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent():
    async with _Upstream() as upstream, _client() as client:
        with pytest.raises(httpx.LocalProtocolError):
            await client.get(upstream.url(), headers={"x-note": "a\r\nx-injected: 1"})
    assert upstream.connections == 0


# timeouts and cancellation


async def test_a_silent_upstream_is_a_read_timeout_and_its_connection_is_not_reused():
    async def silent_first(seen, writer):
        if len(upstream.requests) == 1:
            await asyncio.sleep(30)
        writer.write(OK)
        return True

    async with _Upstream(silent_first) as upstream, _client() as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(upstream.url(), timeout=httpx.Timeout(5.0, read=0.1))
        assert (await client.get(upstream.url())).json() == {"ok": True}
    assert upstream.connections == 2


async def test_a_request_cancelled_while_waiting_leaves_no_broken_connection_in_the_pool():
    arrived = asyncio.Event()

    async def slow_first(seen, writer):
        if len(upstream.requests) == 1:
            arrived.set()
            await asyncio.sleep(0.3)  # answers after the client gave up on it
        writer.write(OK)
        return True

    async with _Upstream(slow_first) as upstream, _client(max_connections=1) as client:
        task = asyncio.create_task(client.get(upstream.url()))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(2):  # not the late answer to the cancelled request: their own
            response = await client.get(upstream.url())
            assert response.json() == {"ok": True}
    assert upstream.connections == 2


# where it connects


async def test_refused_and_unreachable_addresses_are_connect_errors():
    async def internal(host, port):
        return ["10.0.0.1"]

    async with _client(resolver=internal) as client:
        with pytest.raises(AddressRefused, match="10.0.0.1 is not a public address") as caught:
            await client.get("http://upstream.test/v1/models")
    assert isinstance(caught.value, httpx.ConnectError) and caught.value.request.url.host == "upstream.test"
    # the sync transport of background jobs (httpcore underneath) surfaces the same error
    sync = httpx.Client(transport=pinned_sync_transport(allow=lambda: LOOPBACK, resolver=lambda host, port: ["10.0.0.1"]))
    with sync, pytest.raises(AddressRefused, match="10.0.0.1 is not a public address"):
        sync.get("http://upstream.test/v1/models")
    async with _Upstream() as upstream:
        port = upstream.port
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")  # nobody listens there any more


def _tls_for(host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for `host`, and a client context trusting it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
        cert_file.write(pem)
        key_file.write(key_pem)
        cert_file.flush()
        key_file.flush()
        server.load_cert_chain(cert_file.name, key_file.name)
    return server, ssl.create_default_context(cadata=pem.decode())


async def test_tls_verifies_the_url_host_name_on_the_vetted_address():
    server_tls, trust = _tls_for("upstream.test")
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: names.append(name)

    async def loopback(host, port):
        return ["127.0.0.1"]

    upstream = _Upstream()
    upstream.tls = server_tls
    async with upstream, _client(resolver=loopback, verify=trust) as client:
        for _ in range(2):
            response = await client.get(upstream.url(host="upstream.test", scheme="https"))
            assert response.json() == {"ok": True}
        assert upstream.requests[-1].headers["host"] == f"upstream.test:{upstream.port}"
        assert names == ["upstream.test"] and upstream.connections == 1  # one handshake, reused
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
            await client.get(upstream.url(host="other.test", scheme="https"))
    async with upstream, _client(resolver=loopback) as client:  # the system's CAs do not know it
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(upstream.url(host="upstream.test", scheme="https"))
