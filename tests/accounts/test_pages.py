"""What the portal's pages show: costs and attempts in the customer's terms, filters, pages,
CSV exports, prices for the tenant's group, the quickstart's base URL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from observability.models import RequestLog
from tests.conftest import flush_logs, make_channel, make_key, make_price


def log_for(tenant, key_id, n: int, **fields) -> RequestLog:
    defaults = {
        "request_id": f"req_{tenant.pk}_{n}", "tenant_id": tenant.pk, "key_id": key_id, "model": "gpt-test",
        "status": 200, "cost_micros": 1_500, "balance_kind": "credit", "currency": "USD", "prompt_tokens": 10,
        "completion_tokens": 5, "latency_ms": 42, "created_at": timezone.now() - timedelta(minutes=n),
        "channel_name": "secret-upstream-account",
        "attempts": [{"channel": "secret-upstream-account", "outcome": "transient", "error_class": "UpstreamTimeout", "latency_ms": 30},
                     {"channel": "other-upstream", "outcome": "ok", "error_class": "", "latency_ms": 12}],
    }
    return RequestLog.objects.create(**{**defaults, **fields})


def test_a_real_call_shows_in_logs_and_usage_without_channel_names(relay, cast, login, upstream_factory):
    upstream = upstream_factory(name="pages", chunks=2)
    make_price("gpt-test", "1", "2")
    make_channel("hidden-channel-name", upstream.url + "/v1", models=[("gpt-test", "gpt-4o-mini")])
    key = make_key(cast["alice"].tenant, name="pages key")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=key.key, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    flush_logs()
    browser = login(cast["alice"])
    logs = browser.get("/logs/").content.decode()
    assert "pages key" in logs and "gpt-test" in logs and "Credit" in logs
    log = RequestLog.objects.get(tenant_id=cast["alice"].tenant.pk)
    detail = browser.get(f"/logs/{log.pk}/").content.decode()
    for page in (logs, detail):
        assert "hidden-channel-name" not in page and upstream.url not in page and "gpt-4o-mini" not in page
    assert "1: ok" in logs
    usage = browser.get("/usage/").content.decode()
    assert "pages key" in usage and "gpt-test" in usage
    upstream.reset()


def test_logs_filter_by_key_model_status_and_time_and_page(cast, login, settings):
    settings.PORTAL_PAGE_SIZE = 3
    tenant = cast["alice"].tenant
    one, two = make_key(tenant, name="one"), make_key(tenant, name="two")
    for n in range(5):
        log_for(tenant, one.key_id, n)
    log_for(tenant, two.key_id, 10, model="other-model", status=429)
    client = login(cast["alice"])
    page = client.get("/logs/")
    assert page.context["page"].paginator.count == 6 and len(page.context["entries"]) == 3
    assert len(client.get("/logs/?page=2").context["entries"]) == 3
    assert [e["key"] for e in client.get(f"/logs/?key={two.key_id}").context["entries"]] == ["two (" + two.key[:10] + "…)"]
    assert [e["status"] for e in client.get("/logs/?status=429").context["entries"]] == [429]
    assert [e["model"] for e in client.get("/logs/?model=other-model").context["entries"]] == ["other-model"]
    since = (timezone.now() - timedelta(minutes=2, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
    assert client.get(f"/logs/?since={since}").context["page"].paginator.count == 3
    assert client.get("/logs/?page=999&status=abc&since=garbage").status_code == 200


def test_logs_show_attempts_in_the_customers_terms(cast, login):
    tenant = cast["alice"].tenant
    key = make_key(tenant, name="k")
    log = log_for(tenant, key.key_id, 1)
    detail = login(cast["alice"]).get(f"/logs/{log.pk}/").content.decode()
    assert "transient (UpstreamTimeout), 30 ms" in detail and "ok, 12 ms" in detail
    assert "secret-upstream-account" not in detail and "other-upstream" not in detail


def test_another_tenants_logs_never_show(cast, login):
    key = make_key(cast["bob"].tenant, name="bobs")
    log_for(cast["bob"].tenant, key.key_id, 1, model="bobs-model")
    client = login(cast["alice"])
    assert "bobs-model" not in client.get("/logs/").content.decode()
    assert "bobs-model" not in client.get("/usage/?format=csv").content.decode()
    assert "bobs-model" not in client.get("/").content.decode()


def test_usage_csv_has_a_row_per_day_model_and_key(cast, login):
    tenant = cast["alice"].tenant
    key = make_key(tenant, name="csv")
    now = timezone.now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # three minutes apart on one day: just after midnight they go before it, not across it
    last = now if now - day_start > timedelta(minutes=5) else day_start - timedelta(minutes=10)
    for n in range(3):
        log_for(tenant, key.key_id, n, created_at=last - timedelta(minutes=n))
    response = login(cast["alice"]).get("/usage/?format=csv")
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    assert rows[0]["model"] == "gpt-test" and rows[0]["requests"] == "3" and rows[0]["cost"] == "0.0045"


def test_ledger_csv_has_every_movement_with_its_reason(cast, login):
    response = login(cast["alice"]).get("/ledger/?format=csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {(r["balance"], r["amount"], r["currency"]) for r in rows} == {("Credit", "100", "USD"), ("Wallet", "1000", "CNY")}
    assert all(r["reason"] for r in rows)


def test_pricing_shows_the_groups_price_in_both_currencies(cast, login, upstream_factory):
    from billing.services import exchange_rate_set, group_set
    from channels.services import model_set

    group_set(name="default", ratio="2")
    exchange_rate_set(currency="CNY", units_per_usd="7")
    make_price("gpt-test", "1", "3")
    make_channel("official", "http://127.0.0.1:9/v1", models=["gpt-test"])
    model_set(public_id="gpt-test", context_window=128000, max_output=16000)
    make_channel("routed", "http://127.0.0.1:9/v1", models=["gpt-test"], billing="routed", discount_ratio="0.5")
    group_set(name="vip", ratio="1")
    make_channel("vip-only", "http://127.0.0.1:9/v1", models=["vip-model"], groups=["vip"])
    rows = login(cast["alice"]).get("/pricing/").context["rows"]
    (row,) = rows
    assert row["model"] == "gpt-test"
    assert row["credit"] == {"currency": "USD", "input": "2.0000", "output": "6.0000", "cached_input": "—"}
    assert row["wallet"] == {"currency": "CNY", "input": "7.0000", "output": "21.0000", "cached_input": "—"}
    assert (row["context_window"], row["max_output"]) == (128000, 16000)


def test_the_quickstart_fills_in_the_base_url(cast, login, settings):
    client = login(cast["alice"])
    assert 'base_url="http://testserver/v1"' in client.get("/quickstart/").content.decode()
    settings.PORTAL_BASE_URL = "https://api.example.com"
    page = client.get("/quickstart/").content.decode()
    for snippet in ("curl https://api.example.com/v1/chat/completions", 'baseURL: "https://api.example.com/v1"',
                    "ANTHROPIC_BASE_URL=https://api.example.com", 'base_url = "https://api.example.com/v1"'):
        assert snippet in page


def test_the_dashboard_shows_balances_held_and_spend(cast, login):
    tenant = cast["alice"].tenant
    key = make_key(tenant, name="k")
    log_for(tenant, key.key_id, 0)
    page = login(cast["alice"]).get("/")
    credit = next(b for b in page.context["balances"] if b["kind"] == "credit")
    assert credit["amount"] == "100" and credit["held"] == "0"
    assert "<svg" in page.context["chart"]["svg"] and page.context["chart"]["legend"][0]["model"] == "gpt-test"


def test_a_key_made_in_the_portal_keeps_its_limits(cast, login):
    from accounts.models import ApiKey
    from channels.services import model_ensure

    for model in ("gpt-test", "other"):
        model_ensure(public_id=model)  # a key names catalog models only
    client = login(cast["alice"])
    response = client.post("/keys/", {"name": "limited", "models": "gpt-test, other", "rpm": "10", "tpm": "1000",
                                      "daily_cap": "2.5", "monthly_cap": "20", "allowed_ips": "10.0.0.0/8",
                                      "expires_at": "2030-01-01T00:00"})
    assert response.status_code == 200 and response.context["new_secret"].startswith("sk-")
    key = ApiKey.objects.get(name="limited")
    assert key.allowed_models == ["gpt-test", "other"] and key.rpm == 10 and key.tpm == 1000
    assert key.daily_cap_micros == 2_500_000 and key.monthly_cap_micros == 20_000_000
    assert key.allowed_ips == ["10.0.0.0/8"] and key.expires_at.year == 2030 and key.created_by == cast["alice"].user
    assert response.context["new_secret"] not in client.get("/keys/").content.decode()


@pytest.mark.parametrize("field, value", [("daily_cap", "-1"), ("daily_cap", "1.0000001"), ("allowed_ips", "not-an-ip"), ("rpm", "0")])
def test_bad_key_input_is_refused_and_changes_nothing(cast, login, field, value):
    from accounts.models import ApiKey

    before = ApiKey.objects.count()
    response = login(cast["alice"]).post("/keys/", {"name": "bad", field: value})
    assert response.status_code == 400 and ApiKey.objects.count() == before


HUGE = "9" * 30

# Beyond what the database column holds (SQLite: OverflowError) or what Decimal's context takes.
TOO_LARGE = [("rpm", HUGE), ("rpm", str(2**31)), ("tpm", HUGE), ("tpm", str(2**63)), ("daily_cap", HUGE),
             ("daily_cap", "1e30"), ("monthly_cap", "1e30"), ("monthly_cap", "1e1000000"), ("monthly_cap", "9" * 5000),
             ("daily_cap", "1000000000.000001")]


@pytest.mark.parametrize("field, value", TOO_LARGE)
def test_too_large_key_numbers_are_a_form_error_and_change_nothing(cast, login, field, value):
    from accounts.models import ApiKey

    before = ApiKey.objects.count()
    response = login(cast["alice"]).post("/keys/", {"name": "huge", field: value})
    assert response.status_code == 400 and ApiKey.objects.count() == before
    assert field in response.context["form"].errors


@pytest.mark.parametrize("field, value", TOO_LARGE)
def test_too_large_numbers_on_a_key_edit_are_a_form_error_and_change_nothing(cast, login, field, value):
    from accounts.models import ApiKey

    key = make_key(cast["alice"].tenant, name="edited", rpm=10, tpm=1000, daily_cap_micros=1_000_000)
    before = ApiKey.objects.values().get(pk=key.key_id)
    response = login(cast["alice"]).post(f"/keys/{key.key_id}/", {"name": "edited", field: value})
    assert response.status_code == 400 and field in response.context["form"].errors
    assert ApiKey.objects.values().get(pk=key.key_id) == before


def test_the_largest_allowed_key_numbers_are_kept(cast, login):
    from accounts.models import ApiKey

    response = login(cast["alice"]).post("/keys/", {"name": "max", "rpm": str(2**31 - 1), "tpm": str(2**31 - 1),
                                                    "daily_cap": "1000000000", "monthly_cap": "1000000000"})
    assert response.status_code == 200
    key = ApiKey.objects.get(name="max")
    assert key.rpm == key.tpm == 2**31 - 1 and key.daily_cap_micros == key.monthly_cap_micros == 10**15


def test_a_too_long_rotation_overlap_is_refused_and_keeps_the_secret(cast, login):
    from accounts.models import ApiKey

    key = make_key(cast["alice"].tenant, name="rotated")
    before = ApiKey.objects.get(pk=key.key_id).key_hash
    response = login(cast["alice"]).post(f"/keys/{key.key_id}/rotate/", {"overlap_s": HUGE})
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.key_id).key_hash == before


# str.isdigit() is true for these, int() refuses some and the database the rest
ODD_NUMBERS = ["\u00b2", "\u0663", "\uff11", HUGE, "-1", " 1"]


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_odd_log_filters_are_ignored(cast, login, value):
    tenant = cast["alice"].tenant
    key = make_key(tenant, name="k")
    log_for(tenant, key.key_id, 1)
    client = login(cast["alice"])
    for name in ("key", "status"):
        response = client.get("/logs/", {name: value})
        assert response.status_code == 200 and len(response.context["entries"]) == 1, name


@pytest.mark.parametrize("value", [*ODD_NUMBERS, "0", "367"])
def test_odd_usage_days_fall_back_to_thirty(cast, login, value):
    response = login(cast["alice"]).get("/usage/", {"days": value})
    assert response.status_code == 200 and response.context["days"] == 30


def test_log_times_beyond_the_calendar_are_ignored(cast, login):
    tenant = cast["alice"].tenant
    key = make_key(tenant, name="k")
    log_for(tenant, key.key_id, 1)
    client = login(cast["alice"])
    for name, value in (("since", "0001-01-01T00:00:00+01:00"), ("until", "9999-12-31T23:59:59-01:00")):
        response = client.get("/logs/", {name: value})
        assert response.status_code == 200 and len(response.context["entries"]) == 1, name
