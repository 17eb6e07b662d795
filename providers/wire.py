"""The upstream HTTP/1.1 transport: httpx's interface, asyncio and httptools underneath. No Django.

httpx's own transport goes through httpcore's pool, AnyIO's streams (a cancel scope per read and
write) and h11's pure-Python parser; at c=32 that was about 30 % of the relay's event-loop CPU
(bench/profile_relay.py, docs/decisions/010). Here one `asyncio.Protocol` per connection feeds
what arrives to httptools' C parser, the answer's body pieces go to the reader as they were
parsed, and a request is one `transport.write` of its head and (bytes) body.

What the transport guarantees:
- where it connects is decided by `vet` (providers.netpin: every address of the name vetted);
  TLS checks the certificate of the URL's host name (SNI too), and the Host header is the URL's;
- the request's timeouts (connect, read, write, pool) as httpx hands them over, raised as the
  httpx exception of each kind, with the request set;
- a keep-alive pool per origin with a bound on connections (requests beyond it wait), idle
  connections reused last-in first-out, kept at most `keepalive_expiry`, and never reused once
  the upstream closed them (the protocol hears the close: no readiness check per request);
- a request is sent again only when that cannot repeat work: the reused connection was found
  closed before writing, or an idempotent bodiless request got no byte back from a connection
  the upstream had just closed;
- an answer read to its end gives its connection back (unless it said `connection: close`); an
  answer closed early, failed or cancelled closes its connection: no connection with unread or
  unknown bytes is reused;
- reading pauses while more than `_HIGH_WATER` answer bytes wait unread, so a fast upstream
  cannot fill memory.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Awaitable, Callable, Sequence

import httptools
import httpx

# host, port, timeout (s or None) -> the addresses the request may connect to; raises an
# httpx.ConnectError (netpin.AddressRefused) when the name may not be reached.
Vet = Callable[[str, int, float | None], Awaitable[Sequence[str]]]

_HIGH_WATER = 256 * 1024  # unread answer bytes at which reading pauses
_LOW_WATER = 64 * 1024  # ...and resumes
_SWEEP_S = 1.0  # how often, at most, idle connections past their expiry are closed
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_NO_TIMEOUTS: dict = {}


class _Stale(Exception):
    """The upstream closed a reused connection before answering anything (see `_may_resend`)."""


class _Exchange(httpx.AsyncByteStream):
    """One request's answer as it arrives: its head, then its body pieces, which are this
    answer's stream for httpx (`aiter_bytes`, `aread`, `aclose` work on it unchanged)."""

    __slots__ = (
        "conn",
        "request",
        "read_timeout",
        "status",
        "headers",
        "headers_done",
        "done",
        "error",
        "pieces",
        "buffered",
        "waiter",
        "received",
        "is_head",
        "closed",
        "timer",
        "wait_started",
    )

    def __init__(self, conn: _Connection, request: httpx.Request, read_timeout: float | None, is_head: bool) -> None:
        self.conn = conn
        self.request = request
        self.read_timeout = read_timeout
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.done = False
        self.error: Exception | None = None
        self.pieces: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.waiter: asyncio.Future | None = None
        self.received = False  # any byte of the answer came back
        self.is_head = is_head
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.wait_started = 0.0

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self) -> None:
        """Until the connection hears something, or `read_timeout` passes. One timer per answer,
        re-armed only when it fires early (a stream's pieces do not each make and cancel one)."""
        loop = self.conn.loop
        self.waiter = waiter = loop.create_future()
        if self.read_timeout is not None:
            self.wait_started = now = loop.time()
            if self.timer is None:
                self.timer = loop.call_at(now + self.read_timeout, self.on_timer)
        try:
            woken = await waiter
        finally:
            self.waiter = None
        if not woken:
            raise httpx.ReadTimeout("timed out waiting for the upstream's answer", request=self.request)

    def on_timer(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # between waits: the next one arms it again
        deadline = self.wait_started + self.read_timeout
        loop = self.conn.loop
        if loop.time() >= deadline:
            waiter.set_result(False)
        else:
            self.timer = loop.call_at(deadline, self.on_timer)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def __aiter__(self) -> _Exchange:
        return self

    async def __anext__(self) -> bytes:
        pieces = self.pieces
        try:
            while not pieces:
                if self.error is not None:
                    raise self.error
                if self.done or self.closed:
                    raise StopAsyncIteration
                await self.wait()
        except StopAsyncIteration:
            raise
        except BaseException:
            # A failed, timed-out or cancelled read: the connection's state is unknown.
            self.abandon()
            raise
        piece = pieces.popleft()
        self.buffered -= len(piece)
        if self.buffered <= _LOW_WATER and not self.done:  # not done: the connection is still ours
            self.conn.resume()
        return piece

    async def aclose(self) -> None:
        self.abandon()

    def abandon(self) -> None:
        """The reader is done with this answer: if it did not arrive whole, its connection goes."""
        if self.closed:
            return
        self.closed = True
        self.pieces.clear()
        self.stop_timer()
        if not self.done:
            self.conn.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Connection(asyncio.Protocol):
    """One upstream connection: bytes in go to httptools, parsed parts to the current exchange."""

    def __init__(self, pool: _Pool, key: tuple, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: _Exchange | None = None
        self.is_closed = False  # the upstream hung up, or we closed it
        self.is_gone = False  # the pool no longer counts it
        self.is_idle = False
        self.is_sending = False
        self.is_reading_paused = False
        self.is_writing_paused = False
        self.write_waiter: asyncio.Future | None = None
        self.reusable = True
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.done:
            self.close()  # bytes nobody asked for: the connection cannot be trusted again
            return
        exchange.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not exchange.done:
                exchange.error = httpx.RemoteProtocolError(
                    f"upstream sent an invalid HTTP answer ({type(exc).__name__})", request=exchange.request
                )
            self.close()
        if exchange.buffered > _HIGH_WATER and not self.is_reading_paused and not exchange.done:
            self.is_reading_paused = True
            self.transport.pause_reading()
        exchange.wake()

    def eof_received(self) -> None:
        self._lost(None)  # returning None lets the transport close itself

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost(exc)
        writer = self.write_waiter
        if writer is not None and not writer.done():
            writer.set_result(False)
        self._forget()

    def pause_writing(self) -> None:
        self.is_writing_paused = True

    def resume_writing(self) -> None:
        self.is_writing_paused = False
        writer = self.write_waiter
        if writer is not None and not writer.done():
            writer.set_result(True)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.exchange.headers.append((name, value))  # after the answer ended: raises, the parser fails

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        exchange.status = self.parser.get_status_code()
        if exchange.status >= 200:
            exchange.headers_done = True
            if exchange.is_head:
                # httptools cannot be told that a HEAD answer has no body: it ends here, and its
                # connection goes, since the parser may still expect the body the head announced.
                self.reusable = False
                self._complete(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:  # None: a HEAD answer ended at its head
            exchange.pieces.append(body)
            exchange.buffered += len(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        if exchange.status < 200:  # 1xx: an interim answer, ignored; the real one follows
            exchange.headers.clear()
            exchange.status = 0
            return
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._complete(exchange)

    # ours

    def _complete(self, exchange: _Exchange) -> None:
        exchange.done = True
        self.exchange = None
        exchange.stop_timer()
        exchange.wake()
        if self.is_reading_paused:
            self.is_reading_paused = False
            self.transport.resume_reading()
        if self.is_sending:
            self.reusable = False  # answered before the request was sent whole: not reusable
        elif self.reusable and not self.is_closed:
            self.pool.release(self)
        else:
            self.close()

    def _lost(self, exc: BaseException | None) -> None:
        if self.is_closed and self.exchange is None:
            return
        self.is_closed = True
        exchange = self.exchange
        if exchange is None:
            self._forget()
            return
        if exchange.headers_done and not exchange.done and exc is None and not self._framed(exchange):
            self.reusable = False
            self._complete(exchange)  # an answer without length or chunks ends where the connection does
            return
        self.exchange = None
        if exchange.done:
            return
        if not exchange.received:
            exchange.error = _Stale()
        elif exc is not None:
            exchange.error = httpx.ReadError(f"upstream connection failed ({type(exc).__name__})", request=exchange.request)
        else:
            exchange.error = httpx.RemoteProtocolError(
                "upstream closed the connection without sending a complete answer", request=exchange.request
            )
        exchange.wake()

    @staticmethod
    def _framed(exchange: _Exchange) -> bool:
        return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in exchange.headers)

    def resume(self) -> None:
        if self.is_reading_paused and not self.is_closed:
            self.is_reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Drop the connection at once (abort: no unread or unsent bytes matter any more)."""
        if not self.is_closed:
            self.is_closed = True
            if self.transport is not None:
                self.transport.abort()
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            if not exchange.done and exchange.error is None:
                exchange.error = httpx.ReadError("upstream connection closed", request=exchange.request)
                exchange.wake()
        self._forget()

    def _forget(self) -> None:
        if not self.is_gone:
            self.is_gone = True
            self.pool.forget(self)

    async def drain(self, request: httpx.Request, timeout: float | None) -> None:
        """Wait while the kernel and the transport's buffer are full (large uploads). A connection
        that closes meanwhile ends the wait: the upstream may have answered (a 413 before the
        whole upload), and reading the answer tells which."""
        while self.is_writing_paused and not self.is_closed:
            self.write_waiter = waiter = self.loop.create_future()
            timer = None if timeout is None else self.loop.call_later(timeout, _expire, waiter)
            try:
                if not await waiter and not self.is_closed:
                    raise httpx.WriteTimeout("timed out sending the request upstream", request=request)
            finally:
                self.write_waiter = None
                if timer is not None:
                    timer.cancel()


class _Pool:
    """Connections per origin: idle ones in a deque (newest last), one count for them all."""

    def __init__(self, *, limits: httpx.Limits, vet: Vet, ssl_context: ssl.SSLContext) -> None:
        self.max_connections = limits.max_connections or 1 << 30
        self.max_idle = limits.max_keepalive_connections
        if self.max_idle is None:
            self.max_idle = self.max_connections
        self.expiry = limits.keepalive_expiry
        self.vet = vet
        self.ssl_context = ssl_context
        self.idle: dict[tuple, collections.deque[_Connection]] = {}
        self.idle_count = 0
        self.count = 0  # connections open or opening
        self.all: set[_Connection] = set()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.swept_at = 0.0

    async def acquire(self, key: tuple, timeouts: dict, request: httpx.Request) -> tuple[_Connection, bool]:
        """A connection for this origin, and whether it was used before."""
        while True:
            idle = self.idle.get(key)
            while idle:
                conn = idle.pop()
                self.idle_count -= 1
                conn.is_idle = False
                if conn.is_closed or (self.expiry is not None and time.monotonic() - conn.idle_since > self.expiry):
                    conn.close()
                    continue
                return conn, True
            if self.count < self.max_connections or self._evict_idle():
                return await self._connect(key, timeouts, request), False
            await self._wait_for_room(timeouts.get("pool"), request)

    def _evict_idle(self) -> bool:
        """Close an idle connection of another origin to make room (as httpcore does)."""
        for queue in self.idle.values():
            if queue:
                conn = queue.popleft()
                self.idle_count -= 1
                conn.is_idle = False
                conn.close()
                return True
        return False

    async def _wait_for_room(self, timeout: float | None, request: httpx.Request) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            woken = await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._unqueue(waiter)
            elif waiter.result():
                self._wake_one()  # woken, then cancelled: the room it was given goes to the next in line
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not woken:
            self._unqueue(waiter)
            raise httpx.PoolTimeout("timed out waiting for a free upstream connection", request=request)

    def _unqueue(self, waiter: asyncio.Future) -> None:
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass

    def _wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return

    async def _connect(self, key: tuple, timeouts: dict, request: httpx.Request) -> _Connection:
        scheme, host, port = key
        timeout = timeouts.get("connect")
        loop = asyncio.get_running_loop()
        conn = _Connection(self, key, loop)
        self.count += 1
        self.all.add(conn)
        try:
            deadline = None if timeout is None else loop.time() + timeout
            addresses = await self.vet(host, port, timeout)
            tls = scheme == b"https"
            last: Exception | None = None
            for address in addresses:
                left = None if deadline is None else max(deadline - loop.time(), 0.0)
                try:
                    async with asyncio.timeout(left):
                        await loop.create_connection(
                            lambda: conn,
                            address,
                            port,
                            ssl=self.ssl_context if tls else None,
                            server_hostname=host if tls else None,
                        )
                    return conn
                except TimeoutError:
                    raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from None
                except OSError as exc:  # refused, unreachable, TLS failures (ssl.SSLError is one)
                    last = httpx.ConnectError(f"could not connect to {host}:{port} ({exc})", request=request)
            raise last or httpx.ConnectError(f"could not connect to {host}:{port}", request=request)
        except BaseException:
            conn.close()
            raise

    def release(self, conn: _Connection) -> None:
        """An answer ended whole on a reusable connection: it waits for the next request."""
        if self.idle_count >= self.max_idle or conn.is_gone:
            conn.close()
            return
        now = time.monotonic()
        conn.idle_since = now
        conn.is_idle = True
        queue = self.idle.get(conn.key)
        if queue is None:
            queue = self.idle[conn.key] = collections.deque()
        queue.append(conn)
        self.idle_count += 1
        if now - self.swept_at >= _SWEEP_S:
            self._sweep(now)
        if self.waiters:
            self._wake_one()

    def _sweep(self, now: float) -> None:
        self.swept_at = now
        if self.expiry is None:
            return
        for queue in self.idle.values():
            while queue and now - queue[0].idle_since > self.expiry:
                conn = queue.popleft()
                self.idle_count -= 1
                conn.is_idle = False
                conn.close()

    def forget(self, conn: _Connection) -> None:
        """The connection closed: its room is free."""
        self.count -= 1
        self.all.discard(conn)
        if conn.is_idle:
            conn.is_idle = False
            queue = self.idle.get(conn.key)
            if queue is not None:
                try:
                    queue.remove(conn)
                    self.idle_count -= 1
                except ValueError:
                    pass
        if self.waiters:
            self._wake_one()

    def close(self) -> None:
        for conn in list(self.all):
            conn.close()
        self.idle.clear()
        self.idle_count = 0


class WireTransport(httpx.AsyncBaseTransport):
    """httpx's async transport interface over `_Pool` (see the module docstring)."""

    def __init__(self, *, vet: Vet, limits: httpx.Limits = httpx.Limits(), ssl_context: ssl.SSLContext) -> None:
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._pool = _Pool(limits=limits, vet=vet, ssl_context=ssl_context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        key = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout") or _NO_TIMEOUTS
        method = request.method
        stream = request.stream
        body = request.content if isinstance(stream, httpx.ByteStream) else None
        head = _head(request, method)
        pool = self._pool
        may_resend = method in _IDEMPOTENT and body == b""
        while True:
            conn, reused = await pool.acquire(key, timeouts, request)
            try:
                return await self._exchange(conn, request, method, head, body, stream, timeouts)
            except _Stale:
                if reused and may_resend:
                    may_resend = False
                    continue
                raise httpx.RemoteProtocolError("upstream closed the connection without sending an answer", request=request) from None

    async def _exchange(self, conn, request, method, head, body, stream, timeouts) -> httpx.Response:
        exchange = _Exchange(conn, request, timeouts.get("read"), method == "HEAD")
        conn.exchange = exchange
        try:
            transport = conn.transport
            if body is not None:
                transport.write(head + body if body else head)
            else:
                conn.is_sending = True
                transport.write(head)
                await _send_stream(conn, request, stream, timeouts.get("write"))
            if conn.is_writing_paused:
                # While sending, an answer that ends does not free the connection (see _complete).
                conn.is_sending = True
                await conn.drain(request, timeouts.get("write"))
            if conn.is_sending:
                conn.is_sending = False
                if exchange.done:  # answered before the request was sent whole
                    conn.close()
            while not exchange.headers_done:
                if exchange.error is not None:
                    raise exchange.error
                await exchange.wait()
        except BaseException:
            # Done and not sending: the connection went back to the pool whole (a cancellation
            # that came after the answer ended) and may already serve another request.
            exchange.closed = True
            exchange.stop_timer()
            if not exchange.done or conn.is_sending:
                conn.close()
            conn.is_sending = False
            raise
        return httpx.Response(exchange.status, headers=exchange.headers, stream=exchange, extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        self._pool.close()


def _head(request: httpx.Request, method: str) -> bytes:
    """The request line and headers as sent; a header that would split the head is refused."""
    raw = request.headers.raw
    head = b"".join(
        [method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"] + [b"%s: %s\r\n" % pair for pair in raw] + [b"\r\n"]
    )
    lines = len(raw) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise httpx.LocalProtocolError("a request header holds a line break or NUL", request=request)
    return head


async def _send_stream(conn: _Connection, request: httpx.Request, stream, write_timeout: float | None) -> None:
    """A body from an async iterator (multipart uploads): chunked unless its length was given."""
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    transport = conn.transport
    async for piece in stream:
        if conn.is_closed:
            break
        if piece:
            transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if conn.is_writing_paused:
                await conn.drain(request, write_timeout)
    if chunked and not conn.is_closed:
        transport.write(b"0\r\n\r\n")
