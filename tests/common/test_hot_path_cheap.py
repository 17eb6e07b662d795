"""The cheaper forms of per-request work (issue 10, second round) keep their meaning: request ids
stay unique (also across a fork), the embedded configuration version still sees every change,
and the SQLite query metrics count what django-prometheus's backend counted."""

from __future__ import annotations

import os
import re

import pytest
from django.conf import settings
from django.db import DatabaseError, connection
from django_prometheus.db import errors_total, execute_total

from common import config_version
from common.ids import random_hex


def test_request_ids_are_128_random_bits_and_never_repeat():
    seen = {random_hex() for _ in range(5000)}  # several refills of the buffer
    assert len(seen) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in seen)


def test_a_forked_child_never_hands_out_the_parents_next_ids():
    random_hex()  # the buffer is filled in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then gone
        try:
            os.write(write_end, "".join(random_hex() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        child = reader.read().decode()
    os.waitpid(pid, 0)
    parent = "".join(random_hex() for _ in range(10))
    child_ids = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_ids = {parent[i : i + 32] for i in range(0, len(parent), 32)}
    assert len(child_ids) == 10 and not child_ids & parent_ids


@pytest.mark.django_db(transaction=True)
async def test_every_change_of_the_embedded_version_drops_the_caches(monkeypatch):
    """Without Redis the version is the file's inode and nanosecond stamp: changes one right after
    another (inside the kernel's coarse clock tick, maybe on a reused inode) are each seen."""
    monkeypatch.setattr(settings, "REDIS_URL", "")
    drops = []
    follower = config_version.config_follow(lambda: drops.append(1))
    try:
        await config_version.config_sync()
        drops.clear()
        await config_version.config_sync()
        assert drops == []  # no change: the caches stay
        for expected in range(1, 21):
            config_version._bump()
            await config_version.config_sync()
            assert len(drops) == 2 * expected  # once by _bump in this process, once by the sync
    finally:
        config_version._followers.remove(follower)


@pytest.mark.django_db
def test_sqlite_queries_and_their_errors_are_counted_as_before():
    if connection.vendor != "sqlite" or not settings.DATABASE_METRICS:
        pytest.skip("the SQLite backend with query metrics")
    labels = {"alias": connection.alias, "vendor": connection.vendor}
    executed = execute_total.labels(**labels)._value.get()
    failed = errors_total.labels(**labels, type="OperationalError")._value.get()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE counted (x integer)")
        cursor.executemany("INSERT INTO counted (x) VALUES (%s)", [(1,), (2,)])
        with pytest.raises(DatabaseError):
            cursor.execute("SELECT * FROM no_such_table")
    assert execute_total.labels(**labels)._value.get() == executed + 4
    assert errors_total.labels(**labels, type="OperationalError")._value.get() == failed + 1
