"""Database work from async code (the /v1 path). Django's request signals, which normally
recycle connections, don't fire on our lean /v1 app, so each call first drops its thread's
connection if it broke or outlived CONN_MAX_AGE: a restarted database costs one failed
request per thread, not every request after it."""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import orjson
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db import utils as db_utils

log = logging.getLogger(__name__)

# as many threads as asyncio's default executor has (each keeps its own connection), but our
# own: DNS lookups and to_thread work never queue in front of a settle
DB_THREADS = min(32, (os.cpu_count() or 1) + 4)
_pool: ThreadPoolExecutor | None = None


class _Writer:
    """One thread that runs calls one after another, in the order they came, each in a copy of
    its caller's context; the answer goes back to the caller's loop in one call_soon_threadsafe
    (run_in_executor chains three futures per call: decision 017)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="db-writer", daemon=True)
        self._thread.start()

    def call(self, loop, future, fn, kwargs: dict) -> None:
        self._calls.put((loop, future, contextvars.copy_context(), fn, kwargs))

    def _serve(self) -> None:
        while True:
            loop, future, context, fn, kwargs = self._calls.get()
            try:
                answer, failed = context.run(_fresh, fn, kwargs), False
            except BaseException as error:  # noqa: BLE001 -- its caller raises it
                answer, failed = error, True
            if loop is None:  # a thread waits for it (db_threads_disconnect)
                future.set()
                continue
            try:
                loop.call_soon_threadsafe(_answer, future, answer, failed)
            except RuntimeError:  # its loop has closed: nobody is left to answer
                if failed:
                    log.warning("database work whose loop went away failed: %s", type(answer).__name__)

    def run_here(self, fn) -> None:
        """Run `fn()` on the writer thread and wait for it (from a thread that is no event loop)."""
        done = threading.Event()
        self._calls.put((None, done, contextvars.copy_context(), fn, {}))
        done.wait()


def _answer(future: asyncio.Future, answer, failed: bool) -> None:
    if future.cancelled():  # its caller stopped waiting; the work ran to its end all the same
        if failed:
            log.warning("database work whose caller went away failed: %s", type(answer).__name__)
    elif failed:
        future.set_exception(answer)
    else:
        future.set_result(answer)


# SQLite's money writes (run_db_writer): one thread, so one connection, whose page cache stays
# warm (SQLite drops a connection's whole cache when another connection has written since its
# last transaction) and whose writes never wait on the writer lock behind this process's own
_writer: _Writer | None = None
_writer_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="db")
    return _pool


def _the_writer() -> _Writer:
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                _writer = _Writer()
    return _writer


def db_threads_disconnect() -> None:
    """Close the connection each of run_db's and run_db_writer's threads keeps (before its
    database is dropped: tests). One job per thread: each waits at a barrier until all threads
    hold one."""
    if _writer is not None:
        _writer.run_here(connections.close_all)
    if _pool is None:
        return
    barrier = threading.Barrier(DB_THREADS)

    def close() -> None:
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        connections.close_all()

    for future in [_pool.submit(close) for _ in range(DB_THREADS)]:
        future.result()


def _forget_pool() -> None:
    global _pool, _writer
    _pool = _writer = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def _fresh(fn, kwargs):
    close_old_connections()
    return fn(**kwargs)


def _left_behind(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("database work whose caller went away failed: %s", type(future.exception()).__name__)


async def run_db(fn, /, **kwargs):
    """Run `fn(**kwargs)` in a worker thread, in a copy of the caller's context (the log's request
    id binds there too). Each call is a whole unit of work (its own transaction), so calls from
    concurrent requests run side by side. A cancelled caller stops waiting but the work still
    runs to its end in its thread: no transaction is left half done, no settle is dropped.

    A plain run_in_executor on our own pool: asgiref's sync_to_async (what this was) does the
    same with more per call (bench/db_hop.py; docs/decisions/011-money-path-in-one-round-trip.md)."""
    future = asyncio.get_running_loop().run_in_executor(_executor(), contextvars.copy_context().run, _fresh, fn, kwargs)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_left_behind)
        raise


async def run_db_writer(fn, /, **kwargs):
    """`run_db` on the one writer thread: for SQLite's money transactions, which take SQLite's one
    writer lock anyway (decision 017). Calls run one after another, in the order they came; a
    cancelled caller stops waiting while its work runs to its end."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    _the_writer().call(loop, future, fn, kwargs)
    return await future


# --- PostgreSQL statements on the event loop ------------------------------------------------
# The money path's two calls per request (billing's PL/pgSQL functions) are single statements
# in autocommit: they need no ORM and no thread. Each event loop keeps a few psycopg
# AsyncConnections of its own (docs/decisions/014-money-calls-on-the-loop.md).

try:
    import psycopg
except ImportError:  # an SQLite-only install: pg_row is never called
    psycopg = None

_DB_API_ERRORS = (
    "IntegrityError", "DataError", "OperationalError", "InternalError",
    "ProgrammingError", "NotSupportedError", "InterfaceError", "DatabaseError",
)


_vendors: dict[str, str] = {}  # ENGINE -> its vendor ("postgresql", "sqlite", ...)


def _vendor() -> str:
    """The default database's vendor, found once per ENGINE: on the event loop
    `connections["default"]` makes a new connection object per task (Django keeps them per context)."""
    engine = settings.DATABASES["default"]["ENGINE"]
    vendor = _vendors.get(engine)
    if vendor is None:
        vendor = _vendors[engine] = connections["default"].vendor
    return vendor


def pg_on_loop() -> bool:
    """Whether pg_row serves: the default database is PostgreSQL and the setting is on."""
    return settings.DATABASE_LOOP_CONNECTIONS > 0 and _vendor() == "postgresql"


def on_sqlite() -> bool:
    return _vendor() == "sqlite"


_turn_files: dict[str, int | None] = {}  # database file -> the descriptor of its turn file (None: none)


@contextmanager
def sqlite_writer_turn(connection):
    """This process's turn among the processes writing money to one SQLite file (the web
    workers' writer threads), taken before BEGIN IMMEDIATE: a waiter on flock() wakes the moment
    the turn is free, where SQLite's own busy handler sleeps between tries, longer the longer it
    has waited (up to 100 ms), which gave two workers a p99 of several hundred milliseconds
    (decision 017). Other writers (logs,
    the admin) still meet SQLite's lock as before; an in-memory database has no file to share."""
    name = str(connection.settings_dict["NAME"])
    fd = _turn_files.get(name, -1)
    if fd == -1:
        fd = _turn_files[name] = _turn_file(name)
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _turn_file(name: str) -> int | None:
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    try:
        return os.open(f"{name}-writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        log.warning("no turn file beside %s (%s): writers wait in SQLite's busy handler", name, error)
        return None


def _forget_turn_files() -> None:
    for fd in _turn_files.values():
        if fd is not None:
            os.close(fd)  # a child's flock on its parent's open file would share the parent's turn
    _turn_files.clear()


class _LoopConnections:
    """Up to `size` autocommit connections used by one event loop, most recently used first."""

    def __init__(self, size: int) -> None:
        self.idle: list = []
        self.every: set = set()
        self.slots = asyncio.Semaphore(size)

    async def use(self, work):
        """`await work(conn)` on one of the loop's connections; it comes back idle (autocommit)."""
        async with self.slots:
            conn = self.idle.pop() if self.idle else await self._connect()
            is_settled = False  # the work's answer was read, or it failed on the server
            try:
                result = await work(conn)
                is_settled = True
                return result
            except psycopg.Error as error:
                is_settled = True
                raise _as_django(error) from error
            finally:
                if conn.closed or conn.broken or not is_settled:
                    # broken, or stopped half way (its loop shutting down): never reused
                    self.every.discard(conn)
                    _finish(conn)
                else:
                    self.idle.append(conn)

    async def _connect(self):
        params = connections["default"].get_connection_params()
        for name in ("cursor_factory", "context"):
            params.pop(name, None)  # Django's wrappers and adapters: not needed for plain values
        if "prepare_threshold" not in connections["default"].settings_dict.get("OPTIONS", {}):
            # psycopg's default, prepared from the 5th call on, unless the operator chose (Django's
            # own connections prepare nothing unless told to: a pooler in transaction mode before
            # PgBouncer 1.22 needs OPTIONS {"prepare_threshold": None})
            params.pop("prepare_threshold", None)
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        except psycopg.Error as error:
            raise _as_django(error) from error
        self.every.add(conn)
        return conn

    def close(self) -> None:
        for conn in self.every:
            _finish(conn)
        self.every.clear()
        self.idle.clear()


def _finish(conn) -> None:
    # closes the socket without awaiting: works whether or not the connection's loop still runs
    try:
        conn.pgconn.finish()
    except Exception:  # already gone
        pass


def _as_django(error: Exception) -> Exception:
    """The Django exception class of a psycopg error, as Django's own cursors raise (the psycopg
    error stays reachable as __cause__, with its sqlstate)."""
    for cls in type(error).__mro__:
        if cls.__name__ in _DB_API_ERRORS:
            return getattr(db_utils, cls.__name__)(*error.args)
    return db_utils.Error(*error.args)


_loop_connections: dict = {}
_loop_connections_lock = threading.Lock()


def _connections_of(loop) -> _LoopConnections:
    pool = _loop_connections.get(loop)
    if pool is None:
        with _loop_connections_lock:
            for other in [other for other in _loop_connections if other.is_closed()]:
                _loop_connections.pop(other).close()  # loops that ended (tests run many)
            pool = _loop_connections[loop] = _LoopConnections(settings.DATABASE_LOOP_CONNECTIONS)
    return pool


async def pg_row(sql: str, params) -> tuple | None:
    """Run one statement that returns rows (a SELECT, or a write with RETURNING) on PostgreSQL
    in autocommit from the event loop, without a thread, and return its first row (None: no
    row). As with run_db, a cancelled caller stops waiting while the statement runs to its end.
    Errors are Django's database errors."""
    return await _on_loop_connection(partial(_first_row, sql, params))


async def _first_row(sql: str, params, conn) -> tuple | None:
    # one cursor per statement per connection: given the same query object again, psycopg
    # keeps the cursor's adaptation of the parameters instead of building it anew
    cursors = conn.__dict__.setdefault("tokenhub_cursors", {})
    cursor = cursors.get(sql)
    if cursor is None:
        if len(cursors) >= _CURSORS_PER_CONNECTION:
            cursors.clear()  # callers that build their SQL each time: no cursor kept for long
        cursor = cursors[sql] = conn.cursor()
    await cursor.execute(sql, params)
    return await cursor.fetchone()


_CURSORS_PER_CONNECTION = 16


async def _on_loop_connection(work):
    loop = asyncio.get_running_loop()
    future = loop.create_task(_connections_of(loop).use(work))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_left_behind)
        raise


def loop_connections_close() -> None:
    """Close every event loop's connections (before their database is dropped: tests)."""
    with _loop_connections_lock:
        for pool in _loop_connections.values():
            pool.close()
        _loop_connections.clear()


def _forget_loop_connections() -> None:
    _loop_connections.clear()  # a forked child must not share its parent's sockets


os.register_at_fork(after_in_child=_forget_loop_connections)
os.register_at_fork(after_in_child=_forget_turn_files)


# --- appending log rows -------------------------------------------------------------------

# fields whose Python values the database drivers take as they are
_PLAIN_FIELDS = ("AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "FloatField",
                 "IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SmallIntegerField", "TextField")


def _columns_of(model) -> list:
    """(field name, column, how a value is prepared, default) for each concrete field but the
    automatic primary key."""
    columns = []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"):
            continue
        kind = field.get_internal_type()
        if kind in _PLAIN_FIELDS:
            prep = None
        elif kind == "JSONField" and field.encoder is None:
            prep = _json_text
        else:
            prep = field.get_db_prep_save
        columns.append((field.attname, field.column, prep, field.get_default))
    return columns


def _json_text(value, connection) -> str:
    """A JSON field's value as the JSON text both databases take for it (jsonb parses it on
    PostgreSQL, SQLite stores it): what Django's JSONField sends, through orjson rather than
    the json module and psycopg's Jsonb wrapper, several times cheaper per row."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):  # what orjson refuses (an int past 64 bits): as Django would
        return json.dumps(value)


_insert_plans: dict = {}


def _max_params(connection) -> int:
    """How many parameters one statement may carry (SQLite's own limit: Django assumes 999)."""
    if connection.vendor == "sqlite":
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return connection.features.max_query_params or 65535


def _insert_of(model, entries: list[dict], connection) -> tuple[str, str, list[list]]:
    """The table and its columns (`into`), one row's placeholders, and each entry's values as
    the database takes them."""
    plan = _insert_plans.get(model)
    if plan is None:
        columns = _columns_of(model)
        quote = connection.ops.quote_name
        into = f"{quote(model._meta.db_table)} ({', '.join(quote(column) for _, column, _, _ in columns)})"
        plan = _insert_plans[model] = (columns, into, "(" + ", ".join(["%s"] * len(columns)) + ")")
    columns, into, one_row = plan
    rows = [
        [value if prep is None or value is None else prep(value, connection)
         for value, prep in ((entry[name] if name in entry else default(), prep) for name, _, prep, default in columns)]
        for entry in entries
    ]
    return into, one_row, rows


async def rows_ainsert(model, entries: list[dict]) -> None:
    """rows_insert from the event loop, on PostgreSQL (pg_on_loop()), without a thread: the same
    COPY, in one transaction of one of the loop's own connections. A log writer in a thread
    fights the event loop for the GIL; this one does not (docs/decisions/015-log-writes-on-the-loop.md)."""
    if not entries:
        return
    into, one_row, rows = _insert_of(model, entries, connections["default"])
    await _on_loop_connection(partial(_copy_in, into, one_row, rows))


async def _copy_in(into: str, one_row: str, rows: list[list], conn) -> None:
    async with conn.transaction():
        try:
            async with conn.transaction(), conn.cursor() as cursor:  # a savepoint
                async with cursor.copy(f"COPY {into} FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
        except psycopg.errors.UniqueViolation:  # a row already stored: only the COPY is undone
            async with conn.cursor() as cursor:
                await cursor.executemany(f"INSERT INTO {into} VALUES {one_row} ON CONFLICT DO NOTHING", rows)


def rows_insert(model, entries: list[dict], *, using: str = "default") -> None:
    """Append `entries` (field name -> value; a missing field takes its default) to `model`'s
    table in one transaction; a row that conflicts with one already stored (a unique key, e.g. a
    batch retried after its commit was lost) is skipped. What `bulk_create(...,
    ignore_conflicts=True)` does for append-only logs, without a model instance and a compiler
    pass per row: on PostgreSQL a COPY (an INSERT ... ON CONFLICT DO NOTHING when a row is
    already there), on SQLite multi-row INSERTs. Log writers' batches cost a fraction of the CPU
    (docs/decisions/014-money-calls-on-the-loop.md)."""
    if not entries:
        return
    connection = connections[using]
    into, one_row, rows = _insert_of(model, entries, connection)
    if connection.vendor == "postgresql":
        # Django's transaction (a caller's rollback takes the rows too), Django's error classes,
        # psycopg's own cursor: server-side binding (Django's binds on the client, in Python)
        with transaction.atomic(using=using), connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            try:
                with transaction.atomic(using=using), cursor.copy(f"COPY {into} FROM STDIN") as copy:  # a savepoint
                    for row in rows:
                        copy.write_row(row)
            except psycopg.errors.UniqueViolation:  # a row already stored: only the COPY is undone
                cursor.executemany(f"INSERT INTO {into} VALUES {one_row} ON CONFLICT DO NOTHING", rows)
        return
    with transaction.atomic(using=using), connection.cursor() as cursor:
        per_statement = max(1, _max_params(connection) // one_row.count("%s"))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            cursor.execute(
                f"INSERT INTO {into} VALUES {', '.join([one_row] * len(chunk))} ON CONFLICT DO NOTHING",
                [value for row in chunk for value in row],
            )


def delete_in_batches(queryset, *, batch: int = 5000) -> int:
    """Delete what `queryset` selects in batches by primary key, so that a large backlog never
    holds one long lock. Returns the count Django's `delete()` gives."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
