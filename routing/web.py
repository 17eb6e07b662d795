"""The web layer of /v1: an ASGI callable that finds a route with one dict lookup, answers CORS
the way browsers expect, and sends replies with as few ASGI messages as it can.

It replaces Starlette's app, router and middleware stack on the hot path (decision 012): those
cost about 7 % of the event loop's CPU on a whole answer, and on a stream they sent every SSE
event on its own (one socket write each) behind an AnyIO task group. What is kept, and pinned
by the suite:

- 404 `unknown_url` and 405 `method_not_allowed` (with `Allow`) in our error shape; a GET route
  answers HEAD too; a path that only differs by a trailing slash from a route is redirected (307);
- CORS as Starlette's CORSMiddleware answers it with the settings `routing.app` passes
  (preflights before any key is asked for; `Vary: Origin` on every other answer);
- `x-request-id` on every answer, and our 500 JSON (never a traceback) for a fault in a view.

Whole answers go out as one `http.response.start` and one `http.response.body`. Streams go out
as they come, with every chunk the producer can give without waiting joined into one body
message (see `_pump`): an upstream read that held twenty SSE events becomes one write, and no
chunk is ever held back while the producer waits for the upstream. A client that leaves is
noticed either way an ASGI server tells it: `http.disconnect` on receive (uvicorn) or a send
that raises `OSError`; the producer is then cancelled, which closes the upstream stream.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote

from starlette.requests import Request

from common.ids import random_hex

from .errors import TokenHubError
from .replies import Reply, StreamReply

log = logging.getLogger(__name__)

View = Callable[[Request], Awaitable[Reply | StreamReply]]
Message = dict[str, Any]

STREAM_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))


def new_request_id() -> str:
    return "req_" + random_hex()


@dataclass(frozen=True, slots=True)
class Route:
    """`path` is exact, or ends in one `{name:path}` parameter that takes the rest of the path."""

    path: str
    view: View
    methods: frozenset[str]

    @classmethod
    def of(cls, path: str, view: View, methods: Iterable[str]) -> Route:
        allowed = {m.upper() for m in methods}
        if "GET" in allowed:
            allowed.add("HEAD")
        return cls(path, view, frozenset(allowed))

    @property
    def allow(self) -> str:
        return ", ".join(sorted(self.methods, key=_METHOD_ORDER.index))


_METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"]


class Cors:
    """CORS for callers without cookies: any or listed origins, any request header, the
    methods given. Its answers are those of Starlette's CORSMiddleware configured the same way
    (allow_headers=["*"], no credentials, no origin pattern, no private-network access)."""

    __slots__ = ("allow_all", "origins", "methods", "simple_all", "simple_listed", "preflight_base")

    def __init__(self, *, origins: Iterable[str], methods: Iterable[str], expose_headers: Iterable[str], max_age: int) -> None:
        self.origins = frozenset(origins)
        self.allow_all = "*" in self.origins
        self.methods = tuple(methods)
        expose = ", ".join(expose_headers)
        listed = [(b"access-control-expose-headers", expose.encode("latin-1"))] if expose else []
        self.simple_listed = tuple(listed)  # for a listed origin, or one refused
        self.simple_all = ((b"access-control-allow-origin", b"*"), *listed) if self.allow_all else self.simple_listed
        base = [(b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network")]
        if self.allow_all:
            base.append((b"access-control-allow-origin", b"*"))
        base += [
            (b"access-control-allow-methods", ", ".join(self.methods).encode("latin-1")),
            (b"access-control-max-age", str(max_age).encode()),
        ]
        self.preflight_base = tuple(base)

    def is_preflight(self, headers) -> bool:
        """An OPTIONS request is a preflight when it names an origin and the method to allow."""
        return "origin" in headers and "access-control-request-method" in headers

    def preflight(self, headers) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The answer to a preflight: 200 "OK", or 400 naming what was refused."""
        origin = headers["origin"]
        raw = list(self.preflight_base)
        failures = []
        if self.allow_all:
            pass  # `*` is already in the base headers
        elif origin in self.origins:
            raw.append((b"access-control-allow-origin", origin.encode("latin-1")))
        else:
            failures.append("origin")
        if headers["access-control-request-method"] not in self.methods:
            failures.append("method")
        requested = headers.get("access-control-request-headers")
        if requested is not None:  # any header is allowed: mirror what was asked
            raw.append((b"access-control-allow-headers", requested.encode("latin-1")))
        if headers.get("access-control-request-private-network") is not None:
            failures.append("private-network")
        if failures:
            return 400, ("Disallowed CORS " + ", ".join(failures)).encode(), raw
        return 200, b"OK", raw

    def simple(self, origin: str | None) -> tuple[tuple[bytes, bytes], ...]:
        """The headers an answer gets besides `Vary: Origin` (which every answer gets)."""
        if origin is None:
            return ()
        if self.allow_all:
            return self.simple_all
        if origin in self.origins:
            return (*self.simple_listed, (b"access-control-allow-origin", origin.encode("latin-1")))
        return self.simple_listed


class App:
    """The ASGI callable: `routes` dispatched by path, then method; `not_found(request)` and
    `method_not_allowed(request, allow)` answer what matches no route."""

    def __init__(
        self,
        routes: Iterable[Route],
        cors: Cors,
        *,
        not_found: Callable[[Request], Reply],
        method_not_allowed: Callable[[Request, str], Reply],
    ) -> None:
        self.exact: dict[str, Route] = {}
        self.prefixed: list[tuple[str, str, Route]] = []  # (prefix, parameter name, route)
        for route in routes:
            head, brace, tail = route.path.partition("{")
            if not brace:
                self.exact[route.path] = route
            elif tail.endswith(":path}") and "{" not in tail:
                self.prefixed.append((head, tail.removesuffix(":path}"), route))
            else:
                raise ValueError(f"unsupported route pattern {route.path!r}: only a trailing {{name:path}}")
        self.cors = cors
        self.not_found = not_found
        self.method_not_allowed = method_not_allowed

    def match(self, path: str) -> tuple[Route | None, dict[str, str]]:
        route = self.exact.get(path)
        if route is not None:
            return route, {}
        for prefix, name, candidate in self.prefixed:
            if path.startswith(prefix):
                return candidate, {name: path[len(prefix) :]}
        return None, {}

    async def __call__(self, scope: dict, receive, send) -> None:
        request = Request(scope, receive)
        headers = request.headers
        method = scope["method"]
        cors = self.cors
        if method == "OPTIONS" and cors.is_preflight(headers):  # before routing and any key check
            status, body, raw = cors.preflight(headers)
            raw += ((b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain; charset=utf-8"))
            raw.append((b"x-request-id", new_request_id().encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        route, params = self.match(scope["path"])
        try:
            if route is None:
                redirect = self._slash_redirect(request)
                reply = redirect if redirect is not None else self.not_found(request)
            elif method not in route.methods:
                reply = self.method_not_allowed(request, route.allow)
            else:
                scope["path_params"] = params
                reply = await route.view(request)
        except Exception:
            request_id = new_request_id()
            log.exception("request %s failed", request_id)
            error = TokenHubError("The server had an error while processing your request. Request id: " + request_id)
            reply = Reply(error.status, error.render_openai(), {"x-request-id": request_id})
        extra = cors.simple(headers.get("origin"))
        if type(reply) is StreamReply:
            await _stream(reply, extra, receive, send)
        else:
            raw = _raw_headers(reply.headers, reply.media_type, extra, reply.body, reply.status)
            await send({"type": "http.response.start", "status": reply.status, "headers": raw})
            await send({"type": "http.response.body", "body": reply.body})

    def _slash_redirect(self, request: Request) -> Reply | None:
        """A path that names a route but for its trailing slash: 307 to the route (clients that
        build URLs by joining strings send these)."""
        path = request.url.path
        other = path[:-1] if path.endswith("/") else path + "/"
        if path == "/" or self.match(other)[0] is None:
            return None
        location = quote(str(request.url.replace(path=other)), safe=":/%#?=@[]!$&'()*+,;")
        return Reply(307, b"", {"location": location}, media_type="")


def _raw_headers(headers: dict[str, str], media_type: str, extra: tuple, body: bytes | None, status: int) -> list[tuple[bytes, bytes]]:
    """The answer's headers as ASGI wants them: as given, then content-length (for a body),
    content-type (text/* with its charset), the CORS headers, `Vary: Origin`, a request id."""
    raw = []
    has_length = has_type = has_id = False
    vary: list[bytes] = []
    for name, value in headers.items():
        key = name.lower()
        if key == "content-length":
            has_length = True
        elif key == "content-type":
            has_type = True
        elif key == "x-request-id":
            has_id = True
        elif key == "vary":
            vary.append(value.encode("latin-1"))
            continue
        raw.append((key.encode("latin-1"), value.encode("latin-1")))
    if body is not None and not has_length and not (status < 200 or status in (204, 304)):
        raw.append((b"content-length", str(len(body)).encode()))
    if media_type and not has_type:
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=utf-8"
        raw.append((b"content-type", media_type.encode("latin-1")))
    raw += extra
    vary.append(b"Origin")
    raw.append((b"vary", b", ".join(vary)))
    if not has_id:
        raw.append((b"x-request-id", new_request_id().encode()))
    return raw


# --- streams -----------------------------------------------------------------------------------


class _Departure:
    """Watches `receive` for the client leaving while a stream is sent, and cancels the task
    sending it (which cancels the producer it is waiting on, and so the upstream stream)."""

    __slots__ = ("task", "is_gone", "is_over")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.is_gone = False
        self.is_over = False  # the answer is complete: a disconnect now is the normal end

    async def watch(self, receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.is_over:
            self.is_gone = True
            self.task.cancel()


async def _stream(reply: StreamReply, extra: tuple, receive, send) -> None:
    raw = list(STREAM_HEADERS)
    raw += _raw_headers(reply.headers, reply.media_type, extra, None, reply.status)
    chunks = reply.chunks
    try:
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    except OSError:  # gone before the first byte
        await _close(chunks)
        return
    task = asyncio.current_task()
    departure = _Departure(task)
    watcher = task.get_loop().create_task(departure.watch(receive))
    try:
        last = await _pump(chunks, send)
        departure.is_over = True
        await send({"type": "http.response.body", "body": b"".join(last), "more_body": False})  # the last run rides with the end
    except asyncio.CancelledError:
        if not departure.is_gone:
            raise
        task.uncancel()  # ours: the client left, and the producer has been cancelled with us
    except OSError:
        pass  # an ASGI server that says "gone" by refusing the send
    except Exception:
        log.exception("a stream failed after its answer had started; the connection is closed unfinished")
    finally:
        departure.is_over = True
        watcher.cancel()
        await _close(chunks)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()  # a producer that had ended returns at once; one parked at a yield runs its cleanup


async def _pump(chunks: AsyncIterator[bytes], send) -> list[bytes]:
    """Send `chunks` as they come, every run of chunks that is ready without waiting joined
    into one body message; return the last run (the caller sends it as the final message).

    Whether the next chunk is ready is known by starting to compute it: each step of the
    producer (`__anext__()`) is run by hand until it either finishes (ready: keep it) or hands
    up the future it must wait on (not ready). In the second case the chunks kept so far are
    sent first, and then the step is resumed through `_Resumed`, which gives the task that same
    future to wait on, exactly as a plain `await` would have. No chunk waits for the upstream,
    and a producer (relay_stream, the translations, the idempotency keeper) need not know."""
    ready: list[bytes] = []
    step_of = chunks.__anext__
    while True:
        step = step_of()
        try:
            waits_on = step.send(None)
        except StopIteration as finished:
            ready.append(finished.value)
            continue
        except StopAsyncIteration:
            return ready
        except Exception:
            if ready:  # what came before the fault still reaches the client, as it would have one by one
                await send({"type": "http.response.body", "body": b"".join(ready), "more_body": True})
            raise
        if ready:
            body = ready[0] if len(ready) == 1 else b"".join(ready)
            ready = []
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            except BaseException:
                await _unwind(step, waits_on)  # the producer is mid-step: cancel it as a task would be
                raise
        try:
            ready.append(await _Resumed(step, waits_on))
        except StopAsyncIteration:
            return ready


class _Resumed:
    """Awaiting this finishes a producer step that was started by hand and is waiting on
    `waits_on`: the task waits on that, and what the task sends or throws back (a result, a
    cancellation) goes on to the step, as if the step had been awaited from the start."""

    __slots__ = ("step", "waits_on")

    def __init__(self, step, waits_on) -> None:
        self.step = step
        self.waits_on = waits_on

    def __await__(self):
        step, waits_on = self.step, self.waits_on
        while True:
            try:
                sent = yield waits_on
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:
                try:
                    waits_on = step.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    waits_on = step.send(sent)
                except StopIteration as finished:
                    return finished.value


async def _unwind(step, waits_on) -> None:
    """Cancel a producer step that is waiting on `waits_on` and let its cleanup run, which is
    what cancelling a task does to the coroutine it awaits."""
    if isinstance(waits_on, asyncio.Future):
        waits_on.cancel()
    try:
        waits_on = step.throw(asyncio.CancelledError())
    except BaseException:
        return  # the usual end: the cancellation went through the producer and out
    try:
        await _Resumed(step, waits_on)  # cleanup that awaits (a shielded store, a closing stream)
    except BaseException:
        pass
