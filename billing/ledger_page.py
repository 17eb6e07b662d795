"""The portal's ledger page: every movement of the tenant's balances and its reason."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import render

from accounts.portal import portal_view

from .money import format_micros
from .selectors import ledger_entries

LEDGER_PAGE_LIMIT = 500


def _row(entry) -> dict:
    return {
        "created_at": entry.created_at,
        "balance": "Credit" if entry.balance.kind == "credit" else "Wallet",
        "currency": entry.balance.currency,
        "kind": entry.kind,
        "amount": format_micros(entry.amount_micros),
        "balance_after": format_micros(entry.balance_after_micros),
        "reason": entry.note or (f"request {entry.request_id}" if entry.request_id else entry.kind),
        "request_id": entry.request_id,
    }


@portal_view(permission="billing")
def ledger(request):
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="tokenhub-ledger.csv"'
        writer = csv.writer(response)
        writer.writerow(["time", "balance", "currency", "kind", "amount", "balance_after", "reason", "request_id"])
        for entry in ledger_entries(tenant_id=request.tenant.pk):
            row = _row(entry)
            writer.writerow([row["created_at"].isoformat(), row["balance"], row["currency"], row["kind"], row["amount"],
                             row["balance_after"], row["reason"], row["request_id"]])
        return response
    rows = [_row(e) for e in ledger_entries(tenant_id=request.tenant.pk, limit=LEDGER_PAGE_LIMIT)]
    return render(request, "portal/ledger.html", {"rows": rows, "limit": LEDGER_PAGE_LIMIT})
