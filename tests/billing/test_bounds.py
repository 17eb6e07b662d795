"""Money that cannot be beaten: the hold is the worst case and the upstream is told it; a charge
is bounded by what the request could have cost; usage reports are parsed, not trusted;
reconciliation never ends a live request."""

import asyncio
import time

import httpx
import openai
import pytest

from billing import services as billing
from billing.models import Balance, Hold, LedgerEntry
from observability.models import RequestLog
from providers.tokens import count_text, estimate_request_prompt_tokens
from tests.conftest import flush_logs, make_channel, make_key, make_price, make_tenant, settle_background

MESSAGES = [{"role": "user", "content": "hi"}]
UPSTREAM_PROMPT = 12  # what the fake reports


def cost(prompt: int, completion: int) -> int:
    """micro-USD at 1 USD/M in, 2 USD/M out, rounded up once."""
    return -(-(prompt * 1_000_000 + completion * 2_000_000) // 1_000_000)


def our_prompt(**request) -> int:
    return estimate_request_prompt_tokens({"model": "gpt-test", "messages": MESSAGES, **request})


@pytest.fixture
def upstream(upstream_factory):
    fake = upstream_factory(name="bound", chunks=10)
    yield fake
    fake.reset()


@pytest.fixture
def channel(upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    return make_channel("main", upstream.url + "/v1", models=["gpt-test"])


def client_for(relay, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay.url + "/v1", api_key=key, max_retries=0, timeout=30)


def usage_charges() -> list[int]:
    return sorted(-amount for amount in LedgerEntry.objects.filter(kind="usage").values_list("amount_micros", flat=True))


# --- 1. the hold is the worst case, and the upstream is told it -------------------------------


def test_n_times_max_tokens_is_held_so_n128_on_a_small_balance_is_refused_and_nothing_is_sent(relay, channel, upstream, settings):
    """The issue's case: $0.005 daily cap, $0.01 balance, n=128 x 1000 tokens may cost $0.256.
    (REQUEST_MAX_N, 16 by default, refuses n=128 with a 400 before the hold; an operator who
    allows it still gets the whole n x limit held.)"""
    settings.REQUEST_MAX_N = 128
    poor = make_key(make_tenant("poor", credit="0.01", wallet=None), daily_cap_micros=5_000)
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(relay, poor.key).chat.completions.create(model="gpt-test", messages=MESSAGES, n=128, max_tokens=1000)
    assert caught.value.status_code == 402
    assert upstream.requests == []
    assert not LedgerEntry.objects.filter(kind="usage").exists()
    assert Balance.objects.get(tenant=poor.tenant, kind="credit").held_micros == 0


def test_the_hold_covers_every_choice_and_the_largest_limit_field(relay, channel, upstream):
    rich = make_key(make_tenant("rich", credit="10", wallet=None))
    upstream.set_mode("slow_first_byte", delay_s=1.0)
    body = {"model": "gpt-test", "messages": MESSAGES, "n": 3, "max_tokens": 50, "max_completion_tokens": 7}

    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            task = asyncio.create_task(
                client.post(relay.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {rich.key}"})
            )
            await asyncio.sleep(0.5)
            held = await asyncio.to_thread(lambda: Hold.objects.get().amount_micros)
            return held, await task

    held, response = asyncio.run(run())
    assert response.status_code == 200
    assert held == cost(our_prompt(n=3, max_tokens=50, max_completion_tokens=7), 3 * 50)
    sent = upstream.requests[-1].json
    assert sent["max_completion_tokens"] == 50 and "max_tokens" not in sent  # the held limit, in one field


def test_a_brand_that_knows_only_max_tokens_is_sent_the_held_limit(relay, alice, upstream, transactional_db):
    make_price("gpt-test", "1", "2")
    make_channel("vllm", upstream.url + "/v1", models=["gpt-test"], brand="vllm")
    client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=MESSAGES, max_completion_tokens=1, max_tokens=1000)
    sent = upstream.requests[-1].json
    assert sent["max_tokens"] == 1000 and "max_completion_tokens" not in sent
    # what it may generate is what was held (not the 1 token of max_completion_tokens)
    assert Hold.objects.get().amount_micros == cost(our_prompt(max_completion_tokens=1, max_tokens=1000), 1000)


@pytest.mark.parametrize("max_output, expected", [(1000, 1000), (None, 4096)])
def test_a_request_without_a_limit_sends_the_limit_it_held(relay, alice, channel, upstream, max_output, expected):
    from channels.services import model_set

    model_set(public_id="gpt-test", max_output=max_output)
    client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert upstream.requests[-1].json["max_completion_tokens"] == expected


# --- 2. a charge is bounded by what the request could have cost -------------------------------


def test_completion_tokens_beyond_the_limit_sent_are_not_billed_and_are_recorded(relay, alice, channel, upstream):
    upstream.set_mode("ok", usage={"prompt_tokens": UPSTREAM_PROMPT, "completion_tokens": 5_000_000, "total_tokens": 5_000_012})
    response = client_for(relay, alice.key).chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES, n=2, max_tokens=10)
    flush_logs()
    hold = cost(our_prompt(n=2, max_tokens=10), 2 * 10)
    charged = min(hold, cost(UPSTREAM_PROMPT, 2 * 10))  # never above the hold either
    assert usage_charges() == [charged]
    log = RequestLog.objects.get(request_id=response.headers["x-request-id"])
    assert "completion 5000000 > limit sent 20" in log.upstream_discrepancy
    assert log.unbilled_micros == cost(UPSTREAM_PROMPT, 5_000_000) - charged
    assert log.cost_micros == charged


def test_prompt_tokens_far_above_our_count_are_not_billed(relay, alice, channel, upstream, settings):
    upstream.set_mode("ok", usage={"prompt_tokens": 900_000, "completion_tokens": 10, "total_tokens": 900_010})
    client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=MESSAGES, max_tokens=100)
    flush_logs()
    bound = int(our_prompt(max_tokens=100) * settings.USAGE_PROMPT_SLACK_RATIO) + settings.USAGE_PROMPT_SLACK_TOKENS
    hold = cost(our_prompt(max_tokens=100), 100)
    assert usage_charges() == [min(hold, cost(bound, 10))]
    assert "prompt 900000 >" in RequestLog.objects.get().upstream_discrepancy


# --- 3. usage reports are parsed, not trusted ----------------------------------------------------


BAD_USAGE = {
    "string": {"prompt_tokens": "12", "completion_tokens": 10, "total_tokens": 22},
    "negative": {"prompt_tokens": 12, "completion_tokens": -1_000_000, "total_tokens": -999_988},
    "absurd": {"prompt_tokens": 10**18, "completion_tokens": 10, "total_tokens": 10**18},
    "null": {"prompt_tokens": None, "completion_tokens": None},
    "list": [12, 10],
    "bool": {"prompt_tokens": True, "completion_tokens": True},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_USAGE))
def test_a_broken_usage_report_is_counted_instead_and_the_answer_still_arrives(relay, alice, channel, upstream, case, stream):
    upstream.set_mode("ok", usage=BAD_USAGE[case])
    client = client_for(relay, alice.key)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True) if c.choices)
    else:
        text = client.chat.completions.create(model="gpt-test", messages=MESSAGES).choices[0].message.content
    assert text == upstream.text
    flush_logs()
    assert len(upstream.requests) == 1  # no 5xx, so no SDK retry paying twice
    request = {"stream": True} if stream else {}
    assert usage_charges() == [cost(our_prompt(**request), count_text(upstream.text))]
    assert not Hold.objects.filter(status="open").exists()
    log = RequestLog.objects.get()
    assert log.status == 200 and log.is_usage_estimated
    assert billing.ledger_audit() == []


def test_a_usage_report_early_in_a_stream_that_is_cut_does_not_make_the_text_free(relay, alice, channel, upstream):
    upstream.set_mode("cut", cut_after=6, usage_first=True, usage={"prompt_tokens": UPSTREAM_PROMPT, "completion_tokens": 0, "total_tokens": 12})
    with pytest.raises(openai.APIError):
        list(client_for(relay, alice.key).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True))
    settle_background()
    delivered = count_text("".join(upstream.pieces[:6]))
    assert delivered > 0
    assert usage_charges() == [cost(max(UPSTREAM_PROMPT, our_prompt(stream=True)), delivered)]


# --- 4. reconciliation never ends a live request ----------------------------------------------------


def stream_in_background(relay, key, seen: list, body_extra=None):
    def run():
        with httpx.stream(
            "POST", relay.url + "/v1/chat/completions",
            json={"model": "gpt-test", "stream": True, "messages": MESSAGES, **(body_extra or {})},
            headers={"authorization": f"Bearer {key}"}, timeout=30,
        ) as response:
            for line in response.iter_lines():
                seen.append(line)

    import threading

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_reconciliation_in_the_middle_of_a_live_stream_charges_the_full_price_once(relay, alice, channel, upstream):
    upstream.set_mode("ok", chunks=10, chunk_delay_s=0.15)
    seen: list[str] = []
    thread = stream_in_background(relay, alice.key, seen, {"max_tokens": 100})
    wait_for(lambda: Hold.objects.filter(status="open").exists() and len(seen) > 2)
    assert billing.holds_reconcile(older_than_s=0) == {"settled": 1}  # as if the lease had lapsed
    thread.join(timeout=30)
    settle_background()
    flush_logs()
    assert [line for line in seen if line][-1] == "data: [DONE]"  # the stream was not ended
    full = cost(UPSTREAM_PROMPT, len(upstream.pieces))
    charges = usage_charges()
    assert sum(charges) == full and len(charges) == 2  # the floor, then the rest once
    assert Hold.objects.get().charged_micros == full
    assert RequestLog.objects.get().cost_micros == full
    assert billing.ledger_audit() == []


def test_a_live_stream_renews_its_lease_so_reconciliation_leaves_it(relay, alice, channel, upstream, settings):
    settings.HOLD_LEASE_RENEW_S = 0.05
    upstream.set_mode("ok", chunks=40, chunk_delay_s=0.05)
    seen: list[str] = []
    thread = stream_in_background(relay, alice.key, seen)
    wait_for(lambda: Hold.objects.filter(status="open").exists())
    time.sleep(1.5)
    assert billing.holds_reconcile(older_than_s=1.0) == {"settled": 0}
    thread.join(timeout=30)
    settle_background()
    assert usage_charges() == [cost(UPSTREAM_PROMPT, len(upstream.pieces))]  # charged by the request itself, once
