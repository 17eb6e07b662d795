"""`audit_ledger` is a proof, also while traffic runs: audited every second during ~12 s of
concurrent streams, whole answers, refusals and reconciliation, it never reports a mismatch
that is not there (and the money adds up at the end)."""

import asyncio
import threading
import time

import httpx
from django.db import connection

from billing import services as billing
from billing.models import Hold
from tests.conftest import make_channel, make_key, make_price, make_tenant, settle_background

TRAFFIC_S = 12.0
WORKERS = 8


def test_audit_every_second_under_concurrent_traffic_finds_no_false_mismatch(relay, upstream_factory, transactional_db):
    fake = upstream_factory(name="audit-load", chunks=6)
    fake.set_mode("ok", chunk_delay_s=0.01)
    make_price("gpt-test", "1", "2")
    make_channel("main", fake.url + "/v1", models=["gpt-test"])
    # capped keys of one tenant and a small balance of another: settles, caps and refusals meet
    capped = make_tenant("capped", credit="50", wallet=None)
    keys = [make_key(capped, daily_cap_micros=1_000, monthly_cap_micros=1_200).key for _ in range(3)]
    keys.append(make_key(make_tenant("small", credit="0.001", wallet=None)).key)
    audits: list[list[dict]] = []
    stop = threading.Event()

    def auditor():
        try:
            while not stop.is_set():
                audits.append(billing.ledger_audit())
                if len(audits) % 4 == 0:
                    billing.holds_reconcile(older_than_s=600)  # runs beside live requests; ends none of them
                stop.wait(1.0)
        finally:
            connection.close()

    async def worker(client: httpx.AsyncClient, number: int, deadline: float) -> list[int]:
        statuses = []
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            body = {"model": "gpt-test", "max_tokens": 20 + turn % 30, "messages": [{"role": "user", "content": f"q{number}-{turn}"}]}
            if (number + turn) % 2:
                body["stream"] = True
            response = await client.post(
                relay.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {keys[(number + turn) % len(keys)]}"}
            )
            statuses.append(response.status_code)
            if response.status_code == 402:
                await asyncio.sleep(0.1)  # keep the refused loop from flooding the request log
        return statuses

    async def traffic() -> list[int]:
        deadline = time.monotonic() + TRAFFIC_S
        async with httpx.AsyncClient(timeout=30) as client:
            results = await asyncio.gather(*(worker(client, n, deadline) for n in range(WORKERS)))
        return [status for statuses in results for status in statuses]

    # the routing table refreshes in the background (another branch makes it immediate): wait
    # until the new channel answers before the measured traffic starts
    deadline = time.monotonic() + 15
    body = {"model": "gpt-test", "max_tokens": 5, "messages": [{"role": "user", "content": "warm-up"}]}
    while httpx.post(relay.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {keys[0]}"}).status_code != 200:
        assert time.monotonic() < deadline, "the channel never became available"
        time.sleep(0.2)
    thread = threading.Thread(target=auditor)
    thread.start()
    try:
        statuses = asyncio.run(traffic())
    finally:
        stop.set()
        thread.join(timeout=30)
    settle_background()
    assert set(statuses) <= {200, 402}, set(statuses)
    assert statuses.count(200) > 20 and 402 in statuses  # real traffic, and limits were reached
    assert len(audits) >= TRAFFIC_S - 2
    assert [found for found in audits if found] == []
    assert not Hold.objects.filter(status="open").exists()
    assert billing.ledger_audit() == []
