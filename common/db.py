"""Database work from async code (the /v1 path). Django's request signals, which normally
recycle connections, don't fire on our lean /v1 app, so each call first drops its thread's
connection if it broke or outlived CONN_MAX_AGE: a restarted database costs one failed
request per thread, not every request after it."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def _fresh(fn, kwargs):
    close_old_connections()
    return fn(**kwargs)


# built once: making the wrapper (signature checks, functools.update_wrapper) cost about 40 us
# per call, twice per priced request (bench/money_path.py)
_fresh_in_thread = sync_to_async(_fresh, thread_sensitive=False)


async def run_db(fn, /, **kwargs):
    """Run `fn(**kwargs)` in a worker thread. Not thread-sensitive: each call is a whole unit
    of work (its own transaction), so calls from concurrent requests run side by side."""
    return await _fresh_in_thread(fn, kwargs)


def delete_in_batches(queryset, *, batch: int = 5000) -> int:
    """Delete what `queryset` selects in batches by primary key, so that a large backlog never
    holds one long lock. Returns the count Django's `delete()` gives."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]
