"""A web process killed with SIGKILL mid-stream: after restart and reconciliation every
request has exactly one settle or release and the ledger adds up."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from billing.models import Balance, Hold, LedgerEntry
from billing.services import holds_reconcile
from tests.conftest import make_channel, make_key, make_price, make_tenant, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_relay(port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "TOKENHUB_UPSTREAM_ALLOW_CIDRS": "127.0.0.0/8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "relay.asgi:application", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("relay did not start")


@pytest.mark.timeout(120)
def test_a_killed_process_leaves_no_hold_unended(transactional_db, upstream_factory):
    upstream = upstream_factory(name="slow", chunks=40, chunk_delay_s=0.1)
    make_price("gpt-test", "1", "2")
    make_channel("slow", upstream.url + "/v1", models=["gpt-test"])
    tenant = make_tenant("crash", credit="10", wallet=None)
    key = make_key(tenant)
    port = free_port()
    relay = start_relay(port)
    first_chunks = threading.Barrier(6)

    def stream() -> None:
        try:
            with httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"model": "gpt-test", "stream": True, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key.key}"}, timeout=30,
            ) as response:
                for i, _line in enumerate(response.iter_lines()):
                    if i == 1:
                        first_chunks.wait(timeout=20)
        except (httpx.HTTPError, threading.BrokenBarrierError):
            pass  # the relay dies under us: expected

    try:
        # one request that completes before the crash settles itself
        done = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key.key}"}, timeout=30,
        )
        assert done.status_code == 200
        threads = [threading.Thread(target=stream) for _ in range(5)]
        for thread in threads:
            thread.start()
        first_chunks.wait(timeout=20)  # five streams are in flight
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        if relay.poll() is None:
            relay.kill()

    assert Hold.objects.filter(status="open").count() == 5
    restarted = start_relay(port)
    try:
        assert holds_reconcile(older_than_s=0) == {"settled": 5}
        assert holds_reconcile(older_than_s=0) == {"settled": 0}  # exactly once
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)

    holds = list(Hold.objects.all())
    assert len(holds) == 6 and all(h.status == "settled" for h in holds)
    for hold in holds:
        assert LedgerEntry.objects.filter(request_id=hold.request_id, kind="usage").count() == 1
    assert Balance.objects.get(tenant=tenant, kind="credit").held_micros == 0
    call_command("audit_ledger")
