"""Password hashing that a login storm cannot turn into memory exhaustion.

Django's Argon2 default takes 100 MiB per hash with 8 lanes; a dozen concurrent bogus logins
took a web process past 1 GiB. This hasher uses OWASP's minimum for Argon2id (19 MiB, 2 passes,
1 lane) and lets at most PASSWORD_HASH_CONCURRENCY hashes run at once in a process, so memory
for hashing is bounded by their product whatever the request rate. Same algorithm name as
Django's: stored hashes keep verifying (with the parameters they were made with) and are
re-hashed with these at the next successful login.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def _hash_slots() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, settings.PASSWORD_HASH_CONCURRENCY))
        return _slots


class BoundedArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1

    def encode(self, password, salt):
        with _hash_slots():
            return super().encode(password, salt)

    def verify(self, password, encoded):
        with _hash_slots():
            return super().verify(password, encoded)
