"""The portal's pricing page: every model the tenant's group may use (from the channels
catalog) at the tenant's prices (billing's rate card), in both balances' currencies."""

from __future__ import annotations

from decimal import Decimal

from django.shortcuts import render

from accounts.portal import portal_view
from channels.selectors import models_for_group

from .ratecard import ratecard_get
from .selectors import balances_get


def _per_m(micros_usd: int | None, factor: Decimal) -> str:
    if micros_usd is None:
        return "—"
    return f"{(Decimal(micros_usd) * factor / Decimal(1_000_000)).quantize(Decimal('0.0001'))}"


@portal_view(permission="view")
def pricing(request):
    tenant = request.tenant
    card = ratecard_get()
    ratio = card.group_ratio(tenant.group)
    balances = balances_get(tenant_id=tenant.pk)
    credit_currency, wallet_currency = balances["credit"].currency, balances["wallet"].currency
    credit_rate, wallet_rate = card.rate(credit_currency), card.rate(wallet_currency)
    rows = []
    for info in models_for_group(group=tenant.group):
        price = card.prices.get(info["model"])
        row = {**info, "is_free": bool(price and price.is_free), "is_priced": price is not None, "credit": None, "wallet": None}
        if price is not None and not price.is_free:
            for kind, currency, rate, billing in (
                ("credit", credit_currency, credit_rate, "official"),
                ("wallet", wallet_currency, wallet_rate, "routed"),
            ):
                if billing in info["billing"] and rate is not None:
                    factor = ratio * info["billing"][billing] * rate
                    row[kind] = {
                        "currency": currency,
                        "input": _per_m(price.input_micros_per_m, factor),
                        "output": _per_m(price.output_micros_per_m, factor),
                        "cached_input": _per_m(price.cached_input_micros_per_m, factor),
                    }
        rows.append(row)
    return render(
        request, "portal/pricing.html",
        {"rows": rows, "group": tenant.group, "ratio": ratio, "credit_currency": credit_currency, "wallet_currency": wallet_currency},
    )
