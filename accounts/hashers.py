"""Password hashing that a login storm cannot turn into memory exhaustion.

Django's Argon2 default takes 100 MiB per hash with 8 lanes; a dozen concurrent bogus logins
took a web process past 1 GiB. This hasher uses OWASP's minimum for Argon2id (19 MiB, 2 passes,
1 lane), and every hash runs on one of PASSWORD_HASH_CONCURRENCY threads of its own: a storm
waits in line. Dedicated threads matter, not just a semaphore: the C allocator keeps a freed
Argon2 block in the arena of the thread that used it, so hashing on each request's thread left
one such block per arena (about 350 MiB after 50 logins, measured in the login-storm test).

Same algorithm name as Django's Argon2 hasher, which it replaces in PASSWORD_HASHERS: stored
hashes keep verifying (with the parameters they were made with) and are re-hashed with these at
the next successful login.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _hash_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, settings.PASSWORD_HASH_CONCURRENCY), thread_name_prefix="password-hash")
        return _pool


class BoundedArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1

    def encode(self, password, salt):
        return _hash_pool().submit(super().encode, password, salt).result()

    def verify(self, password, encoded):
        return _hash_pool().submit(super().verify, password, encoded).result()
