"""What a usage costs, in exact integers (billing/pricing.py documents the formula)."""

from decimal import Decimal

import pytest

from billing.pricing import PriceSnapshot, charge_micros, list_cost_micros

# 2.50 USD / 1M input, 10.00 USD / 1M output, 1.25 USD / 1M cached input
GPT = PriceSnapshot("gpt", input_micros_per_m=2_500_000, output_micros_per_m=10_000_000, cached_input_micros_per_m=1_250_000)


def test_it_prices_input_and_output_per_million_tokens():
    # 1000 * 2.5 + 500 * 10 = 7500 micro-USD
    assert list_cost_micros(GPT, prompt_tokens=1000, completion_tokens=500) == 7_500


def test_it_rounds_up_once_so_nothing_is_free_by_rounding():
    # 1 * 2.5 = 2.5 micro-USD -> 3
    assert list_cost_micros(GPT, prompt_tokens=1, completion_tokens=0) == 3


def test_cached_tokens_are_charged_at_the_cached_price():
    # 600 uncached * 2.5 + 400 cached * 1.25 + 100 * 10 = 1500 + 500 + 1000
    assert list_cost_micros(GPT, prompt_tokens=1000, completion_tokens=100, cached_tokens=400) == 3_000


def test_cached_tokens_without_a_cached_price_cost_the_input_price():
    plain = PriceSnapshot("m", input_micros_per_m=2_000_000, output_micros_per_m=0)
    assert list_cost_micros(plain, prompt_tokens=1000, completion_tokens=0, cached_tokens=1000) == 2_000


def test_a_long_prompt_is_charged_at_its_tier():
    tiered = PriceSnapshot(
        "gemini", input_micros_per_m=1_250_000, output_micros_per_m=10_000_000,
        tiers=({"above_prompt_tokens": 200_000, "input_micros_per_m": 2_500_000, "output_micros_per_m": 15_000_000},),
    )
    assert list_cost_micros(tiered, prompt_tokens=200_000, completion_tokens=1000) == 250_000 + 10_000
    assert list_cost_micros(tiered, prompt_tokens=200_001, completion_tokens=1000) == 500_003 + 15_000


def test_a_per_request_price_is_added():
    per_request = PriceSnapshot("img", input_micros_per_m=0, output_micros_per_m=0, request_micros=40_000)
    assert list_cost_micros(per_request, prompt_tokens=10, completion_tokens=10) == 40_000


def test_a_free_model_costs_nothing():
    free = PriceSnapshot("free", input_micros_per_m=5_000_000, output_micros_per_m=5_000_000, is_free=True)
    assert list_cost_micros(free, prompt_tokens=10**6, completion_tokens=10**6) == 0


@pytest.mark.parametrize(
    ("group_ratio", "discount", "rate", "expected"),
    [
        ("1", "1", "1", 7_500),  # list price in USD
        ("1.5", "1", "1", 11_250),  # a group paying 1.5x
        ("0.8", "1", "1", 6_000),  # a VIP group at 0.8x
        ("1", "0.6", "1", 4_500),  # a routed channel's discount
        ("1", "1", "7.2", 54_000),  # Wallet in CNY at 7.2 per USD
        ("1.5", "0.6", "7.2", 48_600),  # all together: 7500 * 1.5 * 0.6 * 7.2
        ("0.333", "1", "1", 2_498),  # 2497.5 rounds up
    ],
)
def test_group_discount_and_currency_change_the_charge_as_documented(group_ratio, discount, rate, expected):
    assert charge_micros(7_500, group_ratio=Decimal(group_ratio), discount_ratio=Decimal(discount), units_per_usd=Decimal(rate)) == expected


def test_cache_writes_are_charged_at_the_cache_write_price():
    claude = PriceSnapshot(
        "claude", input_micros_per_m=3_000_000, output_micros_per_m=15_000_000,
        cached_input_micros_per_m=300_000, cache_write_micros_per_m=3_750_000,
    )
    # 1000 prompt = 200 plain + 300 read + 500 written: 200*3 + 300*0.3 + 500*3.75 + 10*15
    assert list_cost_micros(claude, prompt_tokens=1000, completion_tokens=10, cached_tokens=300, cache_write_tokens=500) == 600 + 90 + 1875 + 150


def test_cache_writes_without_a_price_cost_the_input_price():
    plain = PriceSnapshot("m", input_micros_per_m=1_000_000, output_micros_per_m=0)
    assert list_cost_micros(plain, prompt_tokens=100, completion_tokens=0, cache_write_tokens=100) == 100
