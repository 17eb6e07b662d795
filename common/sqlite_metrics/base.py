"""The backend module Django loads for ENGINE = "common.sqlite_metrics" (see the package)."""

from __future__ import annotations

import time

from django.db.backends.sqlite3 import base
from django_prometheus.db import errors_total, execute_many_total, execute_total, query_duration_seconds
from django_prometheus.db.common import DatabaseWrapperMixin

_cursor_classes: dict[tuple[str, str], type] = {}


def _cursor_class(alias: str, vendor: str) -> type:
    cursor_class = _cursor_classes.get((alias, vendor))
    if cursor_class is None:
        cursor_class = _cursor_classes[(alias, vendor)] = _counting_cursor(alias, vendor)
    return cursor_class


def _counting_cursor(alias: str, vendor: str) -> type:
    executed = execute_total.labels(alias, vendor)
    executed_many = execute_many_total.labels(alias, vendor)
    duration = query_duration_seconds.labels(alias, vendor)
    clock = time.perf_counter

    def failed(error_type: type) -> None:
        errors_total.labels(alias, vendor, error_type.__name__).inc()

    class CountingCursor(base.SQLiteCursorWrapper):
        def execute(self, *args, **kwargs):
            executed.inc()
            started = clock()
            try:
                return super().execute(*args, **kwargs)
            except BaseException as error:
                failed(type(error))
                raise
            finally:
                duration.observe(max(clock() - started, 0))

        def executemany(self, query, param_list, *args, **kwargs):
            executed.inc(len(param_list))
            executed_many.inc(len(param_list))
            started = clock()
            try:
                return super().executemany(query, param_list, *args, **kwargs)
            except BaseException as error:
                failed(type(error))
                raise
            finally:
                duration.observe(max(clock() - started, 0))

    return CountingCursor


class DatabaseWrapper(DatabaseWrapperMixin, base.DatabaseWrapper):
    CURSOR_CLASS = base.SQLiteCursorWrapper

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=_cursor_class(self.alias, self.vendor))
