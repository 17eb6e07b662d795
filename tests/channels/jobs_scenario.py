"""One scene for every periodic job, and how to tell that each has run: used by the test of
the embedded runner and by the test of a real Celery worker with beat.

    balance monitor   channel "ds" (DeepSeek) has 0 CNY left      -> snapshot, disabled
    pricing sync      the vendor's document prices gpt-test       -> applied with markup 1.5
    Thompson refresh  reward logs of channel "probe-me"           -> a ThompsonArm
    probes            "probe-me" was disabled for a 401; now fine -> re-enabled
    retention         a request log 200 days old                  -> deleted (a new one stays)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.conftest import make_channel, make_price

SETTINGS = {
    "PRICING_SYNC_APPLY": True,
    "PRICING_SYNC_MARKUP": "1.5",
    "REQUEST_LOG_RETENTION_DAYS": 90,
}
DOCUMENT = {"gpt-test": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06, "max_input_tokens": 100000}}


def set_the_scene(vendor) -> dict:
    from observability.models import RequestLog, RewardLog
    from channels.health.status import channel_auto_disable
    from channels.services import model_ensure
    from vault.services import vault_forget

    # The vault key this process remembers belongs to an earlier test's database: derive it
    # again from this one's, as the worker will, before sealing the channel's key.
    vault_forget()
    vendor.deepseek_balance = "0.00"
    vendor.prices = DOCUMENT
    vendor.set_mode("ok")
    make_price("gpt-test", "1", "2")
    model_ensure(public_id="gpt-test")
    make_channel("ds", vendor.url + "/v1", models=["ds-chat"], brand="deepseek", api_key="sk-ds")
    probe_me = make_channel("probe-me", vendor.url + "/v1", models=["gpt-test"], brand="acme", options={"balance_endpoint": "none"})
    channel_auto_disable(channel_id=probe_me.pk, kind="auth", reason="upstream refused the credential: auth (401)")
    now = datetime.now(timezone.utc)
    RewardLog.objects.bulk_create(
        RewardLog(request_id=f"r{i}", attempt=1, channel_id=probe_me.pk, model="gpt-test", outcome="ok" if i % 4 else "transient",
                  reward=1.0 if i % 4 else 0.0, created_at=now - timedelta(minutes=5))
        for i in range(20)
    )
    for request_id, age_days in (("old", 200), ("new", 1)):
        RequestLog.objects.create(request_id=request_id, status=200, created_at=now - timedelta(days=age_days))
    return {"source": vendor.url + "/prices.json"}


def effects() -> dict[str, bool]:
    from billing.models import Price, PriceChange
    from observability.models import RequestLog
    from channels.models import Channel, ChannelBalanceSnapshot, ThompsonArm

    price = Price.objects.filter(model="gpt-test").first()
    return {
        "balance_snapshot": ChannelBalanceSnapshot.objects.filter(channel__name="ds", amount_micros=0, currency="CNY").exists(),
        "disabled_at_zero": Channel.objects.filter(name="ds", status="disabled", health__auto_disabled_kind="balance").exists(),
        "price_applied": price is not None and (price.input_micros_per_m, price.output_micros_per_m) == (3_000_000, 12_000_000),
        "price_history": PriceChange.objects.filter(model="gpt-test", status="applied").exists(),
        "thompson_arm": ThompsonArm.objects.filter(channel__name="probe-me", model="gpt-test", alpha__gt=10, beta__gt=4).exists(),
        "probe_re_enabled": Channel.objects.filter(name="probe-me", status="enabled").exists(),
        "old_log_deleted": not RequestLog.objects.filter(request_id="old").exists() and RequestLog.objects.filter(request_id="new").exists(),
    }


def wait_for_effects(timeout_s: float) -> dict[str, bool]:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        seen = effects()
        if all(seen.values()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)
