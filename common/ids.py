"""Random identifiers for the hot path, without a system call each.

`uuid.uuid4()` reads 16 bytes from the kernel on every call. Here one read fills a buffer for
`_BATCH` identifiers, handed out in order; the bytes are the same kind (os.urandom), only read
in bulk. A forked child starts with an empty buffer, so parent and child never share one.
"""

from __future__ import annotations

import os

_ID_BYTES = 16
_BATCH = 256

_pool: list[str] = []


def random_hex() -> str:
    """32 hex digits (128 random bits), as `uuid.uuid4().hex` gives, but not version-stamped."""
    if not _pool:
        block = os.urandom(_ID_BYTES * _BATCH).hex()
        step = _ID_BYTES * 2
        _pool.extend(block[start : start + step] for start in range(0, len(block), step))
    return _pool.pop()


def _forget_after_fork() -> None:
    _pool.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
