"""Redemption codes: long random codes shown once and stored hashed, credited once even when
redeemed twice at the same moment, and guessing slowed down per user and per address."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from billing.models import LedgerEntry, RedemptionBatch, RedemptionCode
from billing.selectors import balances_get
from billing.services import RedemptionRefused, redemption_batch_create, redemption_code_hash, redemption_redeem
from tests.billing.conftest import Portal, audit_is_clean, make_user
from tests.conftest import make_tenant, subprocess_database_url


def _wallet(tenant) -> int:
    return balances_get(tenant_id=tenant.pk)["wallet"].amount_micros


def test_codes_are_long_random_and_stored_only_as_hashes(transactional_db):
    batch, codes = redemption_batch_create(kind="wallet", amount_micros=50_000_000, count=20, note="launch")
    assert len(set(codes)) == 20 and all(len(c.replace("-", "")) == 24 for c in codes)
    stored = set(RedemptionCode.objects.filter(batch=batch).values_list("code_hash", flat=True))
    assert stored == {redemption_code_hash(c) for c in codes}
    assert not any(c in stored or c.replace("-", "") in stored for c in codes)
    assert (batch.currency, batch.count) == ("CNY", 20)


def test_a_customer_redeems_a_code_once_at_redeem(payer):
    portal, tenant, _ = payer
    _, (code,) = redemption_batch_create(kind="wallet", amount_micros=50_000_000, count=1)
    response = portal.post("/redeem/", {"code": code.lower().replace("-", " ")})  # typed loosely
    assert response.status_code == 200 and "50 CNY added to your Wallet" in response.text
    assert _wallet(tenant) == 50_000_000
    again = portal.post("/redeem/", {"code": code})
    assert again.status_code == 400 and "not valid, already used or expired" in again.text
    (entry,) = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REDEMPTION)
    assert entry.idempotency_key == f"redeem:{redemption_code_hash(code)}"
    assert _wallet(tenant) == 50_000_000 and audit_is_clean()


def test_an_expired_code_credits_nothing(transactional_db):
    tenant = make_tenant("late", credit=None, wallet=None)
    batch, (code,) = redemption_batch_create(kind="credit", amount_micros=5_000_000, count=1, expires_at=timezone.now() + timedelta(seconds=60))
    RedemptionBatch.objects.filter(pk=batch.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(RedemptionRefused):
        redemption_redeem(tenant_id=tenant.pk, code=code)
    assert balances_get(tenant_id=tenant.pk)["credit"].amount_micros == 0


def test_two_concurrent_redemptions_of_one_code_credit_once(transactional_db):
    first, second = make_tenant("first", credit=None, wallet=None), make_tenant("second", credit=None, wallet=None)
    _, (code,) = redemption_batch_create(kind="credit", amount_micros=10_000_000, count=1)
    barrier = threading.Barrier(2)
    outcomes: dict = {}

    def redeem(tenant) -> None:
        barrier.wait()
        try:
            outcomes[tenant.name] = redemption_redeem(tenant_id=tenant.pk, code=code)
        except Exception as exc:
            outcomes[tenant.name] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem, args=(t,)) for t in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    entries = [o for o in outcomes.values() if isinstance(o, LedgerEntry)]
    refused = [o for o in outcomes.values() if isinstance(o, RedemptionRefused)]
    assert len(entries) == 1 and len(refused) == 1, outcomes
    total = sum(balances_get(tenant_id=t.pk)["credit"].amount_micros for t in (first, second))
    assert total == 10_000_000 and LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REDEMPTION).count() == 1
    assert audit_is_clean()


def test_guessing_codes_is_slowed_per_user_and_per_address(relay, settings):
    settings.REDEEM_MAX_ATTEMPTS = 5
    alice_tenant, bob_tenant = make_tenant("guesser", credit=None, wallet=None), make_tenant("neighbour", credit=None, wallet=None)
    alice, bob = make_user("guesser-owner", alice_tenant), make_user("neighbour-owner", bob_tenant)
    _, (good,) = redemption_batch_create(kind="wallet", amount_micros=1_000_000, count=1)
    from_one = Portal(relay.url, alice, local_address="127.0.0.1")
    for i in range(5):
        assert from_one.post("/redeem/", {"code": f"WRONG-{i:04d}"}).status_code == 400
    slowed = from_one.post("/redeem/", {"code": good})  # even the right code waits now
    assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) > 0
    assert "Too many attempts" in slowed.text
    # the same user from another address: still slowed (per user)
    assert Portal(relay.url, alice, local_address="127.0.0.2").post("/redeem/", {"code": good}).status_code == 429
    # another user from the first address: slowed too (per address)
    assert Portal(relay.url, bob, local_address="127.0.0.1").post("/redeem/", {"code": good}).status_code == 429
    # another user from another address is not
    assert Portal(relay.url, bob, local_address="127.0.0.3").post("/redeem/", {"code": good}).status_code == 200
    assert _wallet(alice_tenant) == 0 and _wallet(bob_tenant) == 1_000_000


def _command(*args: str) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": subprocess_database_url(), "TOKENHUB_VAR_DIR": str(settings.VAR_DIR)}
    return subprocess.run([sys.executable, "manage.py", *args], capture_output=True, text=True, env=env, timeout=60)


def test_create_redemption_codes_prints_the_codes_once(transactional_db):
    done = _command("create_redemption_codes", "--balance", "credit", "--amount", "2.5", "--count", "3", "--expires", "2999-01-01", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    batch = RedemptionBatch.objects.get(pk=out["id"])
    assert len(out["codes"]) == 3 and batch.amount_micros == 2_500_000 and batch.expires_at.year == 2999
    tenant = make_tenant("holder", credit=None, wallet=None)
    redemption_redeem(tenant_id=tenant.pk, code=out["codes"][0])
    assert balances_get(tenant_id=tenant.pk)["credit"].amount_micros == 2_500_000


def test_create_redemption_codes_refuses_bad_arguments_in_one_line(transactional_db):
    for args, message in [
        (("--balance", "credit", "--amount", "0", "--count", "3"), "amount must be positive"),
        (("--balance", "credit", "--amount", "1", "--count", "0"), "count must be between 1 and 10000"),
        (("--balance", "credit", "--amount", "1", "--count", "1", "--expires", "soon"), "is not an ISO date"),
        (("--balance", "credit", "--amount", "1", "--count", "1", "--expires", "2001-01-01"), "expiry must be in the future"),
    ]:
        done = _command("create_redemption_codes", *args, "--json")
        assert done.returncode != 0 and done.stdout == "" and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not RedemptionBatch.objects.exists()


def test_an_operator_generates_a_batch_in_the_admin_and_sees_the_codes_once(client, transactional_db):
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-op-12345")
    client.force_login(operator)
    response = client.post(
        "/admin/billing/redemptionbatch/add/",
        {"balance_kind": "credit", "amount": "10", "count": "4", "expires_at_0": "", "expires_at_1": "", "note": "conference"},
    )
    assert response.status_code == 200, response.content[:500]
    batch = RedemptionBatch.objects.get()
    codes = [line for line in response.content.decode().split('<pre id="codes">')[1].split("</pre>")[0].splitlines() if line]
    assert len(codes) == 4 and batch.note == "conference" and batch.amount_micros == 10_000_000
    assert "data:text/csv;base64," in response.content.decode()
    assert {redemption_code_hash(c) for c in codes} == set(batch.codes.values_list("code_hash", flat=True))
    listing = client.get("/admin/billing/redemptionbatch/")
    assert not any(c in listing.content.decode() for c in codes)  # never again
