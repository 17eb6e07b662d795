"""A storm of wrong logins neither exhausts memory nor gets through: the real relay on loopback
(uvicorn, Django's admin login, django-axes), 50 concurrent wrong passwords for one account."""

from __future__ import annotations

import asyncio
import re
import threading

import httpx
import psutil
import pytest
from django.contrib.auth.models import User

STORM = 50
PASSWORD = "the right password, long enough"


class PeakRss:
    """Samples this process's resident memory (the relay runs in it) until stopped."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def _login_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/admin/login/")
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


async def _login(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": "operator", "password": password, "next": "/admin/"},
    )


@pytest.mark.timeout(90)
def test_fifty_concurrent_wrong_logins_keep_memory_bounded_and_lock_the_account(relay):
    User.objects.create_superuser("operator", password=PASSWORD)

    async def storm():
        async with httpx.AsyncClient(base_url=relay.url, timeout=60) as client:
            token = await _login_form(client)
            before = psutil.Process().memory_info().rss
            with PeakRss() as rss:
                answers = await asyncio.gather(*(_login(client, token, f"wrong {i}") for i in range(STORM)))
            after_storm = await _login(client, token, PASSWORD)
            return before, rss.peak, answers, after_storm

    before, peak, answers, after_storm = asyncio.run(storm())
    print(f"login storm: peak RSS grew {(peak - before) / 2**20:.1f} MiB")
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {200, 429}, statuses  # a wrong password or a lock-out; never a 5xx
    assert 429 in statuses
    # Django's default Argon2 took 100 MiB per concurrent hash (12 logins: +1 GiB); bounded now
    # to PASSWORD_HASH_CONCURRENCY x 19 MiB, plus the rest of the request path.
    assert peak - before < 150 * 1024 * 1024, f"grew {(peak - before) / 2**20:.0f} MiB"
    # the account is locked: even the right password is refused, and no session is made
    assert after_storm.status_code == 429
    assert "sessionid" not in after_storm.cookies


def test_the_password_hasher_is_memory_bounded():
    from django.contrib.auth.hashers import get_hasher, identify_hasher, make_password

    hasher = get_hasher()
    assert (hasher.memory_cost, hasher.parallelism) == (19 * 1024, 1)
    encoded = make_password("something")
    assert identify_hasher(encoded).algorithm == "argon2"
    assert "m=19456" in encoded and "p=1" in encoded
