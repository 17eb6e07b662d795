"""The balance and usage routes that relay-aware clients already call (OpenAI's old dashboard
billing API, as One API and New API serve it), so chat front-ends can show a TokenHub balance:

    GET /v1/dashboard/billing/subscription   hard_limit_usd = the Credit available now plus what
                                             was spent from it this calendar month (UTC), as One
                                             API and New API report it: clients show
                                             "used / limit" and compute what is left as
                                             hard_limit_usd - total_usage for this month
    GET /v1/dashboard/billing/usage          total_usage = Credit spent, in hundredths of a USD
                                             (?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD, end exclusive)

Both also answer without the /v1 prefix. Amounts are the tenant's Credit (USD) balance; the
Wallet is not in USD and these clients know one number only.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone

import orjson

from billing.money import MICROS
from billing.selectors import balances_get, usage_total_micros
from common.db import run_db

from .errors import InvalidRequest
from .journey import Call, check_rate
from .replies import Reply


def _usd(amount_micros: int) -> float:
    return round(amount_micros / MICROS, 6)  # display edge: these clients expect a float of USD


async def subscription(call: Call, _body: bytes) -> Reply:
    await check_rate(call)
    balances = await run_db(balances_get, tenant_id=call.identity.policy.tenant_id)
    credit, wallet = balances["credit"], balances["wallet"]
    now = datetime.now(timezone.utc)
    month_start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    spent_micros = await run_db(usage_total_micros, tenant_id=call.identity.policy.tenant_id, kind="credit", since=month_start, until=None)
    limit_usd = _usd(credit.amount_micros - credit.held_micros + spent_micros)
    expires = call.identity.policy.expires_at
    body = {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": limit_usd,
        "hard_limit_usd": limit_usd,
        "system_hard_limit_usd": limit_usd,
        "access_until": int(expires.timestamp()) if expires else 0,
        "wallet": {"currency": wallet.currency, "amount": _usd(wallet.amount_micros - wallet.held_micros)},
    }
    return Reply(200, orjson.dumps(body), call.headers())


def _day(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), time.min, tzinfo=timezone.utc)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date like 2026-01-31.", param=name, code="invalid_value") from None


async def usage(call: Call, _body: bytes) -> Reply:
    await check_rate(call)
    since = _day(call.identity.query.get("start_date"), "start_date")
    until = _day(call.identity.query.get("end_date"), "end_date")
    spent = await run_db(usage_total_micros, tenant_id=call.identity.policy.tenant_id, kind="credit", since=since, until=until)
    body = {"object": "list", "total_usage": round(spent / MICROS * 100, 4)}
    return Reply(200, orjson.dumps(body), call.headers())
