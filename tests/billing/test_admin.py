"""Operators cannot edit or delete ledger entries in the admin; they add a correcting entry."""

import pytest
from django.contrib.auth.models import User

from billing.models import Balance, LedgerEntry
from tests.conftest import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(client):
    user = User.objects.create_superuser("op", "op@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def test_a_ledger_entry_cannot_be_edited_or_deleted(operator):
    make_tenant("acme", credit="5", wallet=None)
    entry = LedgerEntry.objects.get()
    page = operator.get(f"/admin/billing/ledgerentry/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert operator.post(f"/admin/billing/ledgerentry/{entry.pk}/change/", {"note": "x"}).status_code == 403
    assert operator.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.get().note == entry.note


def test_a_balance_cannot_be_edited_in_the_admin(operator):
    tenant = make_tenant("acme", credit="5", wallet=None)
    balance = Balance.objects.get(tenant=tenant, kind="credit")
    assert operator.post(f"/admin/billing/balance/{balance.pk}/change/", {"amount_micros": 10**12}).status_code == 403
    assert Balance.objects.get(pk=balance.pk).amount_micros == 5_000_000


def test_an_operator_adds_a_correcting_entry(operator):
    tenant = make_tenant("acme", credit="5", wallet=None)
    response = operator.post(
        "/admin/billing/ledgerentry/add/", {"tenant": tenant.pk, "which": "credit", "amount": "-1.5", "note": "refund typo"}
    )
    assert response.status_code == 302
    correction = LedgerEntry.objects.order_by("-id").first()
    assert correction.amount_micros == -1_500_000 and correction.kind == "adjustment"
    assert "refund typo" in correction.note
    assert Balance.objects.get(tenant=tenant, kind="credit").amount_micros == 3_500_000


def test_a_correction_larger_than_the_balance_changes_nothing(operator):
    tenant = make_tenant("acme", credit="1", wallet=None)
    operator.post("/admin/billing/ledgerentry/add/", {"tenant": tenant.pk, "which": "credit", "amount": "-5", "note": "oops"})
    assert LedgerEntry.objects.count() == 1
    assert Balance.objects.get(tenant=tenant, kind="credit").amount_micros == 1_000_000


def test_an_operator_applies_a_proposed_price_from_the_admin(operator):
    from billing.models import Price, PriceChange

    change = PriceChange.objects.create(
        model="gpt-x", source="file://prices.json", new_input_micros_per_m=2_000_000, new_output_micros_per_m=8_000_000,
        status=PriceChange.Status.PROPOSED,
    )
    assert operator.get("/admin/billing/pricechange/").status_code == 200
    response = operator.post("/admin/billing/pricechange/", {"action": "accept", "_selected_action": [change.pk]})
    assert response.status_code == 302
    assert Price.objects.get(model="gpt-x").input_micros_per_m == 2_000_000
    assert PriceChange.objects.get(pk=change.pk).status == "applied"
