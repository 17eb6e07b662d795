"""Requests through the relay are charged once, from the right balance, for what was delivered."""

import asyncio

import httpx
import openai
import pytest

from billing.models import Balance, Hold, LedgerEntry
from observability.models import RequestLog
from tests.conftest import flush_logs, make_channel, make_key, make_price, make_tenant, settle_background

# 1 USD / 1M in, 2 USD / 1M out: the fake answers 12 prompt tokens and one token per chunk.
PROMPT = 12


def usage_cost(prompt: int, completion: int) -> int:
    return -(-(prompt * 1_000_000 + completion * 2_000_000) // 1_000_000)


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="bill", chunks=10)
    yield fake
    fake.reset()


@pytest.fixture
def channel(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    return make_channel("main", upstream.url + "/v1", models=["gpt-test"])


REQUEST = {"model": "gpt-test", "stream": True, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def credit(tenant) -> Balance:
    return Balance.objects.get(tenant=tenant, kind="credit")


def ask(client, **kwargs):
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], **kwargs)


def test_a_request_is_charged_its_usage_once_and_the_log_shows_it(openai_client, alice, channel):
    before = credit(alice.tenant).amount_micros
    response = openai_client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    flush_logs()
    entry = LedgerEntry.objects.get(kind="usage")
    assert entry.amount_micros == -usage_cost(PROMPT, 10)
    assert entry.request_id == response.headers["x-request-id"]
    assert credit(alice.tenant).amount_micros == before - usage_cost(PROMPT, 10)
    assert credit(alice.tenant).held_micros == 0
    log = RequestLog.objects.get(request_id=entry.request_id)
    assert (log.cost_micros, log.balance_kind, log.currency) == (usage_cost(PROMPT, 10), "credit", "USD")


def test_a_stream_is_charged_from_its_usage_chunk(openai_client, alice, channel):
    list(ask(openai_client, stream=True))
    settle_background()
    assert LedgerEntry.objects.get(kind="usage").amount_micros == -usage_cost(PROMPT, 10)


def test_a_stream_cut_by_the_upstream_is_charged_for_what_was_delivered(openai_client, alice, channel, upstream):
    from providers.tokens import count_text, estimate_request_prompt_tokens

    upstream.set_mode("cut", cut_after=4)
    with pytest.raises(openai.APIError):
        list(ask(openai_client, stream=True))
    settle_background()
    delivered = "".join(upstream.pieces[:4])
    prompt = estimate_request_prompt_tokens({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert LedgerEntry.objects.get(kind="usage").amount_micros == -usage_cost(prompt, count_text(delivered))
    assert Hold.objects.get().status == "settled"


def test_a_client_that_goes_away_is_charged_for_what_was_delivered_once(relay, alice, channel, upstream):
    """The upstream would generate 10 pieces (and report them all); the client leaves after
    the first: the charge is bounded by what reached it, not by what was generated."""
    from providers.tokens import count_text, estimate_request_prompt_tokens

    upstream.set_mode("ok", chunk_delay_s=0.4, chunks=10)
    with httpx.stream(
        "POST", relay.url + "/v1/chat/completions",
        json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {alice.key}"},
    ) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break
    assert upstream.wait_for_disconnects(1, timeout_s=5)
    settle_background()
    flush_logs()
    entries = LedgerEntry.objects.filter(kind="usage")
    assert entries.count() == 1
    log = RequestLog.objects.get()
    assert log.status == 499 and log.is_usage_estimated
    # at most the pieces sent before the relay saw the client leave: it notices on its next write
    delivered_at_most = count_text("".join(upstream.pieces[:3]))
    assert 1 <= log.completion_tokens <= delivered_at_most < len(upstream.pieces)
    prompt = estimate_request_prompt_tokens({"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert 0 < -entries.get().amount_micros <= usage_cost(prompt, delivered_at_most)


def test_a_failed_over_attempt_costs_nothing(openai_client, alice, upstream_factory, transactional_db):
    failing = upstream_factory(name="failing", chunks=10, mode="429")
    backup = upstream_factory(name="backup", chunks=3)
    make_price("gpt-test", "1", "2")
    make_channel("failing", failing.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("backup", backup.url + "/v1", models=["gpt-test"], priority=0)
    ask(openai_client)
    assert len(failing.requests) == 1 and len(backup.requests) == 1
    entry = LedgerEntry.objects.get(kind="usage")
    assert entry.amount_micros == -usage_cost(PROMPT, 3)  # the backup's answer, nothing for the 429


@pytest.mark.parametrize("mode", ["context_overflow", "500"])
def test_a_request_the_upstream_refuses_costs_nothing_and_holds_nothing(openai_client, alice, channel, upstream, mode):
    upstream.set_mode(mode)
    with pytest.raises(openai.APIStatusError):
        ask(openai_client)
    assert not LedgerEntry.objects.filter(kind="usage").exists()
    assert credit(alice.tenant).held_micros == 0
    assert Hold.objects.get().status == "released"


def test_a_routed_channel_bills_the_wallet_in_its_currency(relay, alice, upstream, transactional_db):
    from billing.services import exchange_rate_set

    exchange_rate_set(currency="CNY", units_per_usd="7.2")
    make_price("cheap", "1", "2")
    make_channel("routed", upstream.url + "/v1", models=["cheap"], billing="routed", discount_ratio="0.5")
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi"}])
    entry = LedgerEntry.objects.get(kind="usage")
    assert entry.balance.kind == "wallet"
    # list 32 micro-USD * 0.5 discount * 7.2 CNY/USD = 115.2 -> 116 micro-CNY
    assert entry.amount_micros == -116


def test_a_group_ratio_changes_the_charge(relay, upstream, transactional_db):
    from billing.services import group_set

    group_set(name="vip", ratio="0.5")
    make_price("gpt-test", "1", "2")
    make_channel("vip-channel", upstream.url + "/v1", models=["gpt-test"], groups=["vip"])
    vip = make_key(make_tenant("vip-co", group="vip"))
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=vip.key, max_retries=0)
    ask(client)
    assert LedgerEntry.objects.get(kind="usage").amount_micros == -16  # 32 * 0.5


def test_a_free_model_is_served_without_a_charge(openai_client, alice, upstream, transactional_db):
    from billing.services import price_set

    price_set(model="free-model", is_free=True)
    make_channel("free", upstream.url + "/v1", models=["free-model"])
    openai_client.chat.completions.create(model="free-model", messages=[{"role": "user", "content": "hi"}])
    assert not LedgerEntry.objects.filter(kind="usage").exists()


def test_a_key_over_its_daily_cap_gets_402_saying_so(relay, alice, channel):
    capped = make_key(alice.tenant, daily_cap_micros=50)
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=capped.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, max_tokens=100)  # may cost 12 + 200 micro-USD > 50
    assert caught.value.status_code == 402
    assert "daily spending cap" in caught.value.message


def test_without_max_tokens_the_models_max_output_is_held(relay, alice, channel, transactional_db):
    from channels.services import model_set

    model_set(public_id="gpt-test", max_output=1000)
    poor = make_key(make_tenant("poor", credit="0.001", wallet=None))  # 1000 micro-USD
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=poor.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client)  # 1000 output tokens at 2 USD/M = 2000 micro-USD > 1000
    assert caught.value.status_code == 402
    ask(client, max_tokens=100)  # 12 + 200 fits


@pytest.mark.parametrize("limit", ["balance", "daily_cap"])
def test_concurrent_streams_never_overspend_and_the_ledger_balances(relay, channel, transactional_db, limit):
    """100 streams at once against a balance (or a key's daily cap) that affords about 10."""
    from django.core.management import call_command

    from billing.models import KeySpend
    from providers.tokens import estimate_request_prompt_tokens

    # each request may cost up to 12 + 2*100 = 212 micro-USD (prompt estimate may differ a little)
    if limit == "balance":
        tenant = make_tenant("tight", credit="0.0025", wallet=None)  # 2500 micro-USD: about 10 holds
        key = make_key(tenant)
    else:
        tenant = make_tenant("capped", credit="100", wallet=None)
        key = make_key(tenant, daily_cap_micros=2500)

    async def one(client: httpx.AsyncClient) -> int:
        async with client.stream(
            "POST", relay.url + "/v1/chat/completions", json=REQUEST,
            headers={"authorization": f"Bearer {key.key}"},
        ) as response:
            async for _ in response.aiter_bytes():
                pass
            return response.status_code

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
            return await asyncio.gather(*(one(client) for _ in range(100)))

    statuses = asyncio.run(run())
    settle_background()
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 402}
    afford_micros = 2500
    each_micros = usage_cost(PROMPT, 10)  # what one served stream really costs (the fake's usage)
    hold_micros = usage_cost(estimate_request_prompt_tokens(REQUEST), 100)  # what one stream holds
    # nobody is refused while the balance still covers a hold; a stream served paid in full
    assert afford_micros // hold_micros <= accepted <= afford_micros // each_micros, statuses
    charged = -sum(LedgerEntry.objects.filter(kind="usage").values_list("amount_micros", flat=True))
    assert charged == accepted * each_micros <= afford_micros
    balance = credit(tenant)
    assert balance.held_micros == 0
    assert LedgerEntry.objects.filter(kind="usage", balance=balance).count() == accepted  # every accepted stream paid
    assert Hold.objects.filter(status="open").count() == 0
    if limit == "daily_cap":
        spend = KeySpend.objects.get(key_id=key.key_id, period="day")
        assert spend.held_micros == 0 and spend.spent_micros == charged
    else:
        assert balance.amount_micros == afford_micros - charged
    call_command("audit_ledger")


def test_a_request_is_charged_at_the_discount_of_the_channel_that_answered(openai_client, alice, upstream_factory, transactional_db):
    failing = upstream_factory(name="full-price", chunks=10, mode="500")
    cheap = upstream_factory(name="half-price", chunks=10)
    make_price("gpt-test", "1", "2")
    make_channel("full-price", failing.url + "/v1", models=["gpt-test"], priority=10)
    make_channel("half-price", cheap.url + "/v1", models=["gpt-test"], priority=0, discount_ratio="0.5")
    ask(openai_client)
    assert LedgerEntry.objects.get(kind="usage").amount_micros == -16  # 32 micro-USD list, half of it


def test_a_non_streamed_request_whose_client_gave_up_is_still_settled(relay, alice, channel, upstream):
    """The upstream bills us for the answer it computes, so the request is charged when it arrives."""
    import time

    upstream.set_mode("slow_first_byte", delay_s=1.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            relay.url + "/v1/chat/completions",
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {alice.key}"}, timeout=0.5,
        )
    deadline = time.monotonic() + 10
    while not LedgerEntry.objects.filter(kind="usage").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert LedgerEntry.objects.get(kind="usage").amount_micros == -usage_cost(PROMPT, 10)
    assert credit(alice.tenant).held_micros == 0


def test_a_long_prompt_is_counted_for_its_hold(relay, channel, transactional_db):
    """Long prompts are counted off the event loop; the hold still covers all of them."""
    poor = make_key(make_tenant("long", credit="0.01", wallet=None))  # 10,000 micro-USD
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=poor.key, max_retries=0)
    prompt = "word " * 20_000  # about 20,000 tokens at 1 USD/M: 20,000 micro-USD, over the balance
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-test", max_tokens=1, messages=[{"role": "user", "content": prompt}])
    assert caught.value.status_code == 402
    ask(client, max_tokens=1)  # a short one fits
