"""The /v1 tests' helpers: a model served from one protocol's fake (`protocol_upstreams`, in the
top conftest), plain prices, what the ledger charged, and the Anthropic SDK as a client."""

from __future__ import annotations

import pytest

from tests.conftest import flush_logs, make_channel, make_price

# Prices chosen so charges read plainly: per token 1000 micro-USD in, 2000 out, 100 cached.
PRICE = {"input_usd": "1000", "output_usd": "2000", "cached_input_usd_per_m": "100"}


def charge_micros(*, prompt: int, completion: int, cached: int = 0) -> int:
    return (prompt - cached) * 1000 + cached * 100 + completion * 2000


def serve_model(kind: str, upstreams: dict, *, model: str = "m-test", name: str | None = None, **channel):
    """Price `model` and make a channel of provider type `kind` serve it from its fake."""
    fake = upstreams[kind]
    base_url = fake.url + "/v1" if kind == "openai" else fake.url
    upstream_name = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}[kind]
    make_price(model, PRICE["input_usd"], PRICE["output_usd"], cached_input_usd_per_m=PRICE["cached_input_usd_per_m"])
    return make_channel(
        name or f"{kind}-channel",
        base_url,
        models=[(model, upstream_name)],
        provider_type=kind,
        api_key=f"sk-{kind}-upstream",
        **channel,
    )


@pytest.fixture
def anthropic_client(relay, alice):
    import anthropic

    return anthropic.Anthropic(base_url=relay.url, api_key=alice.key, max_retries=0, timeout=30)


def ledger_charge(request_id: str) -> int:
    """The micro-units one request was charged (a positive number), from the ledger."""
    from billing.models import LedgerEntry

    flush_logs()
    entries = list(LedgerEntry.objects.filter(request_id=request_id))
    assert len(entries) == 1, entries
    return -entries[0].amount_micros
