"""The One API / OpenAI dashboard billing routes that chat front-ends call for a balance."""

import httpx
import pytest

from tests.conftest import make_channel, make_price


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_subscription_shows_the_credit_available_in_usd(relay, alice, prefix):
    response = httpx.get(relay.url + prefix + "/dashboard/billing/subscription", headers={"authorization": f"Bearer {alice.key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "billing_subscription"
    assert body["hard_limit_usd"] == body["soft_limit_usd"] == body["system_hard_limit_usd"] == 100.0
    assert body["access_until"] == 0 and body["has_payment_method"] is True


def test_usage_is_credit_spent_in_hundredths_of_a_usd(relay, alice, bob, upstream_factory):
    import openai

    upstream = upstream_factory(name="dash", chunks=10)
    make_price("gpt-test", "1000", "2000")  # expensive, so the cents show: 12*1000 + 10*2000 = 32000 micro-USD
    make_channel("dash", upstream.url + "/v1", models=["gpt-test"])
    client = openai.OpenAI(base_url=relay.url + "/v1", api_key=alice.key, max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    headers = {"authorization": f"Bearer {alice.key}"}
    assert httpx.get(relay.url + "/v1/dashboard/billing/usage", headers=headers).json()["total_usage"] == 3.2
    old = httpx.get(relay.url + "/v1/dashboard/billing/usage?start_date=2020-01-01&end_date=2020-02-01", headers=headers)
    assert old.json()["total_usage"] == 0
    bad = httpx.get(relay.url + "/v1/dashboard/billing/usage?start_date=yesterday", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "start_date"
    # bob cannot see alice's usage
    bobs = httpx.get(relay.url + "/v1/dashboard/billing/usage", headers={"authorization": f"Bearer {bob.key}"})
    assert bobs.json()["total_usage"] == 0


def test_the_dashboard_needs_a_key(relay, transactional_db):
    assert httpx.get(relay.url + "/v1/dashboard/billing/subscription").status_code == 401
