"""`rows_insert`: log rows appended in one transaction (COPY on PostgreSQL, multi-row INSERTs on
SQLite). Every field the entry leaves out takes its default; JSON, text with COPY's special
characters and aware datetimes come back as they went in; a row whose unique key is already
stored is skipped while the rest of its batch lands; an empty batch does nothing; a batch larger
than one SQLite statement may carry lands whole. On PostgreSQL `rows_ainsert` (the event loop's
way, through its own connections) is held to the same."""

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common.db import loop_connections_close, rows_ainsert, rows_insert
from observability.models import RequestLog, RewardLog

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True, scope="module")
def _loop_connections_closed():
    yield
    loop_connections_close()  # before the test database is dropped


@pytest.fixture(params=["sync", "loop"])
def insert(request):
    """rows_insert, and rows_ainsert from an event loop (PostgreSQL only): the same rows land."""
    if request.param == "sync":
        return rows_insert
    if connection.vendor != "postgresql":
        pytest.skip("rows_ainsert serves PostgreSQL only")
    return lambda model, entries: asyncio.run(rows_ainsert(model, entries))


def request_log(request_id: str, **fields) -> dict:
    return {"request_id": request_id, "status": 200, "created_at": NOW, **fields}


def reward_log(request_id: str, attempt: int = 1, **fields) -> dict:
    return {
        "request_id": request_id,
        "attempt": attempt,
        "channel_id": 7,
        "model": "m",
        "outcome": "ok",
        "reward": 1.0,
        "created_at": NOW,
        **fields,
    }


def stored(model, **lookup) -> dict:
    return {
        field.attname: getattr(model.objects.get(**lookup), field.attname) for field in model._meta.concrete_fields if not field.primary_key
    }


def test_fields_left_out_take_their_defaults(insert):
    insert(RequestLog, [request_log("r1")])
    insert(RewardLog, [{"request_id": "r1", "attempt": 1, "channel_id": 7, "model": "m", "outcome": "ok", "created_at": NOW}])

    expected = RequestLog(request_id="r1", status=200, created_at=NOW)
    assert stored(RequestLog, request_id="r1") == {
        f.attname: getattr(expected, f.attname) for f in RequestLog._meta.concrete_fields if not f.primary_key
    }
    assert stored(RequestLog, request_id="r1")["attempts"] == [] and stored(RequestLog, request_id="r1")["directives"] == {}
    assert stored(RewardLog, request_id="r1") == {
        "request_id": "r1",
        "attempt": 1,
        "channel_id": 7,
        "model": "m",
        "mode": "",
        "outcome": "ok",
        "reward": None,
        "latency_ms": 0,
        "created_at": NOW,
    }


def test_every_field_given_comes_back_as_given(insert):
    tricky = 'tab\there, newline\nthere, back\\slash, \\N, quote " and \u00fcn\u00efc\u00f8d\u00e9 \U0001f680'
    entry = request_log(
        "r-all",
        tenant_id=2**40,
        key_id=12,
        endpoint="responses",
        model="gpt-x",
        channel_id=3,
        channel_name=tricky[:100],
        upstream_model="up",
        attempts=[
            {"channel": "a\tb", "outcome": "ok", "error_class": None, "latency_ms": 12},
            {"channel": tricky, "nested": {"list": [1, 2.5, None, True, False, "\\N"], "empty": {}}},
        ],
        candidates=[{"channel": "a", "eligible": False, "reason": "x" * 300}],
        status=502,
        error_class="upstream",
        error_message=tricky,
        prompt_tokens=10,
        completion_tokens=20,
        cached_tokens=3,
        is_usage_estimated=True,
        cost_micros=-5,
        upstream_discrepancy="d",
        unbilled_micros=9,
        balance_kind="credit",
        currency="USD",
        latency_ms=1500,
        ttft_ms=None,
        overhead_ms=0.25,
        is_stream=True,
        finish_reason="stop",
        directives={"mode": "fast", "x-tokenhub-note": tricky, "weights": {"a": 0.5}},
        parent_request_id="parent",
        created_at=datetime(2026, 3, 1, 12, 0, 1, 123456, tzinfo=timezone.utc),
    )
    insert(RequestLog, [entry])

    assert stored(RequestLog, request_id="r-all") == entry


def test_aware_datetimes_in_any_zone_round_trip_as_the_same_instants(insert):
    instants = {
        "shanghai": datetime(2026, 3, 2, 4, 0, 0, 1, tzinfo=ZoneInfo("Asia/Shanghai")),  # 20:00:00.000001 UTC the day before
        "utc": datetime(2026, 3, 1, 20, 0, 0, 2, tzinfo=timezone.utc),
        "new-york": datetime(2026, 3, 1, 15, 0, 0, 3, tzinfo=ZoneInfo("America/New_York")),  # 20:00:00.000003 UTC
    }
    insert(RequestLog, [request_log(name, created_at=at) for name, at in instants.items()])
    insert(RewardLog, [reward_log(name, created_at=at) for name, at in instants.items()])

    for model in (RequestLog, RewardLog):
        assert dict(model.objects.values_list("request_id", "created_at")) == instants
        # stored as instants, not as local wall-clock times: ordering and ranges follow the instant
        assert list(model.objects.order_by("created_at").values_list("request_id", flat=True)) == ["shanghai", "utc", "new-york"]
        assert set(model.objects.filter(created_at__gt=instants["shanghai"]).values_list("request_id", flat=True)) == {"utc", "new-york"}


def test_a_request_log_already_stored_is_skipped_and_the_rest_of_the_batch_lands(insert):
    insert(RequestLog, [request_log("r1", model="first")])

    insert(RequestLog, [request_log("r0", model="new"), request_log("r1", model="second"), request_log("r2", model="new")])

    assert dict(RequestLog.objects.values_list("request_id", "model")) == {"r0": "new", "r1": "first", "r2": "new"}


def test_a_reward_log_already_stored_is_skipped_and_the_rest_of_the_batch_lands(insert):
    insert(RewardLog, [reward_log("q", 1, outcome="ok")])

    insert(
        RewardLog, [reward_log("q", 1, outcome="again"), reward_log("q", 2, outcome="transient"), reward_log("other", 1, outcome="ok")]
    )

    assert sorted(RewardLog.objects.values_list("request_id", "attempt", "outcome")) == [
        ("other", 1, "ok"),
        ("q", 1, "ok"),
        ("q", 2, "transient"),
    ]


def test_a_row_twice_in_one_batch_is_stored_once(insert):
    insert(RewardLog, [reward_log("q", 1, outcome="ok"), reward_log("q", 1, outcome="again"), reward_log("q", 2)])

    assert sorted(RewardLog.objects.values_list("request_id", "attempt", "outcome")) == [("q", 1, "ok"), ("q", 2, "ok")]


def test_an_empty_batch_does_nothing():
    connection.close()
    rows_insert(RequestLog, [])
    assert connection.connection is None  # not even connected
    with CaptureQueriesContext(connection) as queries:
        rows_insert(RequestLog, [])
        rows_insert(RewardLog, [])
    assert len(queries) == 0
    assert not RequestLog.objects.exists() and not RewardLog.objects.exists()


def test_a_batch_larger_than_one_statement_under_the_default_sqlite_limit_lands_whole():
    # 200 rows of 30 columns: 6000 parameters, six times the 999 Django assumes for SQLite
    rows_insert(RequestLog, [request_log(f"r{i:03}", prompt_tokens=i, created_at=NOW + timedelta(seconds=i)) for i in range(200)])

    assert list(RequestLog.objects.order_by("created_at").values_list("request_id", "prompt_tokens")) == [
        (f"r{i:03}", i) for i in range(200)
    ]


def test_a_batch_lands_whole_in_statements_as_large_as_sqlite_allows():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own limit of parameters per statement")
    connection.ensure_connection()
    limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # what older builds allow
    try:
        rows_insert(RequestLog, [request_log("r050", model="first")])
        with CaptureQueriesContext(connection) as queries:
            rows_insert(RequestLog, [request_log(f"r{i:03}", model="batch") for i in range(200)])
    finally:
        connection.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

    assert len([q for q in queries if q["sql"].startswith("INSERT")]) > 1  # it did take several statements
    assert RequestLog.objects.count() == 200
    assert RequestLog.objects.get(request_id="r050").model == "first"


def test_a_batch_above_the_sqlite_default_limit_lands_whole(insert):
    # more parameters than SQLite's default limit of 32766 (Debian's builds): several statements
    insert(RewardLog, [reward_log(f"r{i}", latency_ms=i) for i in range(5000)])

    assert RewardLog.objects.count() == 5000
    assert sum(RewardLog.objects.values_list("latency_ms", flat=True)) == sum(range(5000))


def test_a_batch_with_a_row_the_database_refuses_stores_nothing(insert):
    with pytest.raises(Exception) as caught:
        insert(RewardLog, [reward_log("a"), reward_log("b", reward=2.0), reward_log("c")])  # rewardlog_reward_unit

    assert "rewardlog_reward_unit" in str(caught.value)
    assert not RewardLog.objects.exists()


def test_a_batch_with_a_stored_row_and_a_row_the_database_refuses_stores_nothing(insert):
    insert(RewardLog, [reward_log("a")])

    with pytest.raises(Exception) as caught:
        insert(RewardLog, [reward_log("a"), reward_log("b"), reward_log("c", reward=2.0)])

    assert "rewardlog_reward_unit" in str(caught.value)
    assert list(RewardLog.objects.values_list("request_id", flat=True)) == ["a"]


def test_rows_written_after_other_work_in_a_callers_transaction_go_with_its_rollback():
    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        RequestLog.objects.create(request_id="other work", status=200, created_at=NOW)
        rows_insert(RewardLog, [reward_log("a")])
        raise Undo

    assert not RequestLog.objects.exists()
    assert not RewardLog.objects.exists()


def test_rows_written_first_in_a_callers_transaction_go_with_its_rollback():
    # On PostgreSQL this fails (common/db.py as of a31898c): in a caller's atomic block that has
    # not run a statement yet, psycopg's connection.transaction() sees an idle connection and
    # brackets the COPY in a BEGIN/COMMIT of its own, so the rows outlive the caller's rollback.
    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        rows_insert(RewardLog, [reward_log("a")])
        RequestLog.objects.create(request_id="other work", status=200, created_at=NOW)
        raise Undo

    assert not RequestLog.objects.exists()
    assert not RewardLog.objects.exists()


def test_json_fields_store_what_djangos_json_field_stores(insert):
    odd = {"big": 2**70, "neg": -(2**65), "float": 0.1, 7: "int key", "nested": [{"\u00fc": None}], "s": "\\N\t\n"}
    insert(RequestLog, [request_log("r-json", attempts=[odd], directives={"n": 1, 2: [True, False]})])

    expected = RequestLog(request_id="r-django", status=200, created_at=NOW, attempts=[odd], directives={"n": 1, 2: [True, False]})
    expected.save()
    assert RequestLog.objects.get(request_id="r-json").attempts == RequestLog.objects.get(request_id="r-django").attempts
    assert RequestLog.objects.get(request_id="r-json").directives == {"n": 1, "2": [True, False]}
    assert RequestLog.objects.get(request_id="r-json").attempts[0]["big"] == 2**70
