"""`pg_row`: on PostgreSQL, one statement in autocommit straight from the event loop over a few
connections per loop. It returns the statement's first row; errors are Django's (the psycopg
error, with its SQLSTATE, is their cause); a cancelled caller stops waiting while the statement
runs to its end; a connection the server killed costs one call, not every call after it; a
closed loop's connections are closed when another loop comes. The async money calls built on it
(`ahold_open`, `ahold_settle`, `ahold_release`) leave what the sync ones leave, on both databases."""

import asyncio
import time
from datetime import datetime, timezone

import pytest
from django.db import DatabaseError, DataError, IntegrityError, connection
from django.db import Error as DjangoDatabaseError

from billing import services as billing
from billing.models import Balance, Hold, KeySpend
from common.db import db_threads_disconnect, loop_connections_close, pg_on_loop, pg_row, rows_ainsert
from observability.models import RewardLog
from tests.billing.money_state import money_state

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PID = "SELECT pg_backend_pid()"
REWARD_INSERT = (
    "INSERT INTO observability_rewardlog (request_id, attempt, channel_id, model, mode, outcome, reward, latency_ms, created_at)"
    " VALUES (%s, 1, 1, 'm', '', 'ok', 1, 0, now()) RETURNING id"
)


@pytest.fixture(autouse=True, scope="module")
def _connections_closed():
    """The loops' connections and the database threads' (ahold_* on SQLite, refusals): closed
    before the test database is dropped."""
    yield
    loop_connections_close()
    db_threads_disconnect()


def reward_log(request_id: str) -> dict:
    return {"request_id": request_id, "attempt": 1, "channel_id": 1, "model": "m", "outcome": "ok", "reward": 1.0, "created_at": NOW}


def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("pg_row serves PostgreSQL only")


def backends() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {pid for (pid,) in cursor.fetchall()}


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- rows and errors -------------------------------------------------------------------------


def test_pg_on_loop_is_postgresql_with_the_setting_on(settings):
    assert pg_on_loop() is (connection.vendor == "postgresql")
    settings.DATABASE_LOOP_CONNECTIONS = 0
    assert pg_on_loop() is False


def test_the_statements_first_row_is_returned():
    postgresql_only()

    async def calls():
        return (
            await pg_row("SELECT %s::int + 1, %s::text", [41, "x"]),
            await pg_row("SELECT n FROM generate_series(7, 9) AS n ORDER BY n", None),
            await pg_row("SELECT 1 WHERE false", None),
        )

    assert asyncio.run(calls()) == ((42, "x"), (7,), None)


def test_errors_are_djangos_with_the_psycopg_error_and_its_sqlstate_as_cause():
    postgresql_only()

    async def errors():
        pid = (await pg_row(PID, None))[0]
        caught = []
        for sql, params in (
            ("DO $$ BEGIN RAISE EXCEPTION 'refused here' USING ERRCODE = 'THB01'; END $$", None),
            ("SELECT 1 / %s", [0]),
            (REWARD_INSERT, ["twice"]),
            (REWARD_INSERT, ["twice"]),
        ):
            try:
                await pg_row(sql, params)
            except Exception as error:  # noqa: BLE001 - what arrives is the point
                caught.append(error)
        return pid, caught, (await pg_row(PID, None))[0]

    pid, (refused, division, duplicate), pid_after = asyncio.run(errors())
    assert isinstance(refused, DatabaseError) and refused.__cause__.sqlstate == "THB01"
    assert "refused here" in str(refused)
    assert isinstance(division, DataError) and division.__cause__.sqlstate == "22012"
    assert isinstance(duplicate, IntegrityError) and duplicate.__cause__.sqlstate == "23505"
    assert RewardLog.objects.filter(request_id="twice").count() == 1
    assert pid_after == pid  # an error in autocommit leaves its connection as good as before


def refusal_text(call) -> tuple[str, str]:
    try:
        call()
    except billing.Refused as refused:
        return refused.which, str(refused)
    pytest.fail("not refused")


def hold_args(actor, key: str, amount: int, **overrides) -> dict:
    return {
        "hold_key": key,
        "request_id": key,
        "tenant_id": actor.tenant.pk,
        "kind": "credit",
        "model": "m",
        "amount_micros": amount,
        "floor_micros": 0,
        "cap_amount_micros": amount,
        "caps": billing.CapPolicy(None, None, None),
        "now": NOW,
        **overrides,
    }


@pytest.mark.parametrize(
    ("amount", "daily", "monthly", "which"),
    [
        pytest.param(150_000_000, None, None, "credit", id="balance"),
        pytest.param(5_000_000, 1_000_000, None, "daily_cap", id="daily-cap"),
        pytest.param(5_000_000, None, 1_000_000, "monthly_cap", id="monthly-cap"),
    ],
)
def test_ahold_open_refuses_as_hold_open_does(alice, amount, daily, monthly, which):
    postgresql_only()
    caps = billing.CapPolicy(alice.key_id if (daily or monthly) else None, daily, monthly)
    args = hold_args(alice, "r1", amount, caps=caps)

    async_refusal = refusal_text(lambda: asyncio.run(billing.ahold_open(**args)))
    sync_refusal = refusal_text(lambda: billing.hold_open(**args))

    assert async_refusal == sync_refusal
    assert async_refusal[0] == which
    assert not Hold.objects.exists()
    assert Balance.objects.get(tenant=alice.tenant, kind="credit").held_micros == 0
    assert not KeySpend.objects.filter(held_micros__gt=0).exists()


# --- a cancelled caller ----------------------------------------------------------------------


def test_a_cancelled_caller_stops_waiting_and_the_statement_still_lands():
    postgresql_only()
    slow_insert = (
        "INSERT INTO observability_rewardlog (request_id, attempt, channel_id, model, mode, outcome, reward, latency_ms, created_at)"
        " SELECT %s, 1, 1, 'm', '', 'ok', 1, 0, now() FROM pg_sleep(0.6) RETURNING id"
    )
    landed = "SELECT count(*) FROM observability_rewardlog WHERE request_id = 'late'"

    async def cancel_midway():
        task = asyncio.ensure_future(pg_row(slow_insert, ["late"]))
        await asyncio.sleep(0.15)  # the statement is running (sleeping) on the server
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        waited = time.monotonic() - cancelled_at
        before = (await pg_row(landed, None))[0]  # another of the loop's connections
        deadline = time.monotonic() + 10
        while (await pg_row(landed, None))[0] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return waited, before

    waited, before = asyncio.run(cancel_midway())
    assert waited < 0.3  # the caller did not wait for the statement
    assert before == 0  # cancelled mid-statement: nothing had landed yet
    assert RewardLog.objects.filter(request_id="late").count() == 1


# --- broken and abandoned connections -------------------------------------------------------


def test_a_connection_killed_by_the_server_costs_at_most_one_call():
    postgresql_only()
    loop = asyncio.new_event_loop()
    try:
        pid = loop.run_until_complete(pg_row(PID, None))[0]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0] is True
        assert wait_until(lambda: pid not in backends())
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(loop.run_until_complete(pg_row(PID, None))[0])
            except DjangoDatabaseError as error:  # a psycopg error escaping would fail the test
                outcomes.append(error)
    finally:
        loop.close()
    failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    assert len(failures) <= 1
    assert outcomes[len(failures) :] == [outcomes[-1]] * (3 - len(failures))  # then one new connection, kept
    assert isinstance(outcomes[-1], int) and outcomes[-1] != pid


def test_waits_for_writing_and_pipelines_leave_the_connection_serving_statements():
    """A wait for writing (a statement larger than the socket's buffer) and the INSERT
    fallback's pipeline on a loop's connections leave them answering the statements after."""
    postgresql_only()
    big = "x" * 8_000_000

    async def mixed():
        answers = [(await pg_row("SELECT length(%s), pg_backend_pid()", [big]))[0]]
        await rows_ainsert(RewardLog, [reward_log("dup")])
        await rows_ainsert(RewardLog, [reward_log("dup"), reward_log("after-dup")])  # COPY refused: executemany
        for i in range(50):
            answers.append((await pg_row("SELECT %s::int + 1", [i]))[0])
        answers.append((await pg_row("SELECT length(%s)", [big]))[0])
        return answers

    answers = asyncio.run(asyncio.wait_for(mixed(), 30))

    assert answers == [len(big), *range(1, 51), len(big)]
    assert sorted(RewardLog.objects.values_list("request_id", flat=True)) == ["after-dup", "dup"]


def test_the_connections_of_a_closed_loop_are_closed_when_another_loop_comes():
    postgresql_only()
    first = asyncio.run(pg_row(PID, None))[0]
    assert first in backends()  # kept after its loop closed, until another loop comes
    second = asyncio.run(pg_row(PID, None))[0]
    assert second != first
    assert wait_until(lambda: first not in backends())
    assert second in backends()


def test_a_loop_still_open_keeps_its_connections_while_another_loop_comes():
    postgresql_only()
    open_loop = asyncio.new_event_loop()
    try:
        kept = open_loop.run_until_complete(pg_row(PID, None))[0]
        other = asyncio.run(pg_row(PID, None))[0]
        assert other != kept
        asyncio.run(pg_row(PID, None))  # a third loop: `other`'s loop is closed, `open_loop` is not
        assert wait_until(lambda: other not in backends())
        assert kept in backends()
        assert open_loop.run_until_complete(pg_row(PID, None))[0] == kept  # and uses it again
    finally:
        open_loop.close()


@pytest.mark.parametrize("size", [1, 3])
def test_a_loop_uses_at_most_its_setting_of_connections(settings, size):
    postgresql_only()
    settings.DATABASE_LOOP_CONNECTIONS = size

    async def many():
        return await asyncio.gather(*(pg_row("SELECT pg_backend_pid() FROM pg_sleep(0.1)", None) for _ in range(size * 3)))

    assert len({pid for (pid,) in asyncio.run(many())}) == size


# --- the async money calls match the sync ones -----------------------------------------------


def money_steps(actor, prefix: str):
    """(step, args) of one request sequence: opens (two refused), settles, a release, a
    second settle of an ended hold and a charge above what was held."""
    caps = billing.CapPolicy(actor.key_id, 20_000_000, 50_000_000)

    def open_(key, amount, **extra):
        return ("open", hold_args(actor, prefix + key, amount, floor_micros=1_000_000, caps=caps, **extra))

    return [
        open_("1", 5_000_000),
        open_("2", 3_000_000),
        open_("3", 200_000_000),  # more than the balance
        open_("4", 30_000_000),  # more than the daily cap
        ("settle", {"hold_key": prefix + "1", "charge_micros": 4_000_000, "note": "n1"}),
        ("release", {"hold_key": prefix + "2"}),
        ("settle", {"hold_key": prefix + "1", "charge_micros": 4_000_000}),  # ended: nothing
        open_("5", 2_000_000),
        ("settle", {"hold_key": prefix + "5", "charge_micros": 9_000_000}),  # at most what was held
        ("release", {"hold_key": prefix + "missing"}),
    ]


def outcome(result, prefix: str):
    if isinstance(result, billing.Refused):
        return ("refused", result.which, str(result))
    if isinstance(result, billing.Ended):
        return (result.request_id.removeprefix(prefix), result.status, result.charged_micros)
    return "held" if isinstance(result, int) else result


def test_async_holds_leave_what_sync_holds_leave(alice, bob):
    sync_steps = {"open": billing.hold_open, "settle": billing.hold_settle, "release": billing.hold_release}
    sync_outcomes = []
    for step, args in money_steps(bob, "bob-"):
        try:
            sync_outcomes.append(outcome(sync_steps[step](**args), "bob-"))
        except billing.Refused as refused:
            sync_outcomes.append(outcome(refused, "bob-"))

    async_steps = {"open": billing.ahold_open, "settle": billing.ahold_settle, "release": billing.ahold_release}

    async def run_async():
        outcomes = []
        for step, args in money_steps(alice, "alice-"):
            try:
                outcomes.append(outcome(await async_steps[step](**args), "alice-"))
            except billing.Refused as refused:
                outcomes.append(outcome(refused, "alice-"))
        return outcomes

    async_outcomes = asyncio.run(run_async())

    assert async_outcomes == sync_outcomes
    assert [o[:2] if isinstance(o, tuple) else o for o in async_outcomes] == [
        "held",
        "held",
        ("refused", "credit"),
        ("refused", "daily_cap"),
        ("1", "settled"),
        ("2", "released"),
        None,
        "held",
        ("5", "settled"),
        None,
    ]
    alice_state, bob_state = money_state(alice.tenant, alice.key_id, "alice-"), money_state(bob.tenant, bob.key_id, "bob-")
    assert alice_state == bob_state
    assert alice_state["balance"] == (100_000_000 - 4_000_000 - 2_000_000, 0)
    assert [entry[:2] for entry in alice_state["entries"]] == [("usage", -4_000_000), ("usage", -2_000_000)]
