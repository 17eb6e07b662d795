"""The ledger: append-only, idempotent, always adding up; holds end exactly once."""

from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from billing import services as billing
from billing.models import Balance, Hold, KeySpend, LedgerEntry
from tests.conftest import make_key, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def credit_of(tenant) -> Balance:
    return Balance.objects.get(tenant=tenant, kind="credit")


def open_hold(tenant, key="req_1", amount=1_000_000, caps=None, now=None, floor=0):
    return billing.hold_open(
        hold_key=key, request_id=key, tenant_id=tenant.pk, kind="credit", model="m", amount_micros=amount,
        floor_micros=floor, cap_amount_micros=amount, caps=caps or billing.CapPolicy(None, None, None), now=now,
    )


def test_every_tenant_starts_with_an_empty_credit_in_usd_and_wallet_in_cny():
    from billing.selectors import balances_get

    tenant = make_tenant("t", credit=None, wallet=None)
    assert {(b.kind, b.currency, b.amount_micros) for b in balances_get(tenant_id=tenant.pk).values()} == {
        ("credit", "USD", 0),
        ("wallet", "CNY", 0),
    }


def test_a_credit_with_the_same_idempotency_key_is_applied_once():
    tenant = make_tenant("t", credit=None, wallet=None)
    first = billing.balance_credit(tenant_id=tenant.pk, kind="credit", amount="2.5", idempotency_key="stripe:evt_1")
    again = billing.balance_credit(tenant_id=tenant.pk, kind="credit", amount="2.5", idempotency_key="stripe:evt_1")
    assert first.pk == again.pk
    assert credit_of(tenant).amount_micros == 2_500_000
    assert LedgerEntry.objects.count() == 1


def test_it_refuses_to_take_more_than_the_balance_and_changes_nothing():
    tenant = make_tenant("t", credit="1", wallet=None)
    with pytest.raises(ValueError, match="available"):
        billing.balance_credit(tenant_id=tenant.pk, kind="credit", amount="-1.5", idempotency_key="adj")
    assert credit_of(tenant).amount_micros == 1_000_000
    assert LedgerEntry.objects.count() == 1


def test_the_database_refuses_a_negative_balance():
    tenant = make_tenant("t", credit="1", wallet=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        Balance.objects.filter(tenant=tenant, kind="credit").update(amount_micros=-1)


def test_the_database_refuses_a_second_entry_with_the_same_idempotency_key():
    tenant = make_tenant("t", credit="1", wallet=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            balance=credit_of(tenant), kind="adjustment", amount_micros=5, balance_after_micros=5, idempotency_key="test:t:credit"
        )


def test_postgresql_refuses_to_update_or_delete_a_ledger_entry():
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's; SQLite is the single-user embedded default")
    tenant = make_tenant("t", credit="1", wallet=None)
    entry = LedgerEntry.objects.get()
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount_micros=999)
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    assert credit_of(tenant).amount_micros == 1_000_000


def test_a_hold_is_settled_once_and_the_rest_released():
    tenant = make_tenant("t", credit="10", wallet=None)
    open_hold(tenant, amount=3_000_000)
    assert credit_of(tenant).held_micros == 3_000_000
    assert billing.hold_settle(hold_key="req_1", charge_micros=1_234_567) is not None
    assert billing.hold_settle(hold_key="req_1", charge_micros=1_234_567) is None
    assert billing.hold_release(hold_key="req_1") is None
    balance = credit_of(tenant)
    assert (balance.amount_micros, balance.held_micros) == (10_000_000 - 1_234_567, 0)
    usage = LedgerEntry.objects.get(kind="usage")
    assert (usage.amount_micros, usage.request_id, usage.balance_after_micros) == (-1_234_567, "req_1", balance.amount_micros)


def test_a_hold_that_does_not_fit_is_refused_saying_which_balance_and_how_much():
    tenant = make_tenant("t", credit="1", wallet=None)
    open_hold(tenant, key="a", amount=600_000)
    with pytest.raises(billing.Refused) as refused:
        open_hold(tenant, key="b", amount=600_000)
    assert str(refused.value).startswith("Insufficient Credit balance: 0.4 USD available, this request may cost up to 0.6 USD")
    assert Hold.objects.count() == 1


def test_a_settlement_never_charges_more_than_its_hold_nor_below_other_holds():
    tenant = make_tenant("t", credit="1", wallet=None)
    open_hold(tenant, key="a", amount=500_000)
    open_hold(tenant, key="b", amount=400_000)
    billing.hold_settle(hold_key="a", charge_micros=5_000_000)  # far more than held (a prompt underestimated)
    balance = credit_of(tenant)
    assert balance.amount_micros == 500_000 and balance.held_micros == 400_000
    assert Hold.objects.get(hold_key="a").charged_micros == 500_000  # the excess is not charged


def test_one_settle_cannot_overrun_the_keys_caps():
    tenant = make_tenant("t", credit="10", wallet=None)
    caps = billing.CapPolicy(key_id=7, daily_cap_micros=1_000, monthly_cap_micros=2_000)
    open_hold(tenant, key="a", amount=900, caps=caps)
    billing.hold_settle(hold_key="a", charge_micros=256_000)  # an upstream that generated far more
    day = KeySpend.objects.get(key_id=7, period="day")
    assert (day.spent_micros, day.held_micros) == (900, 0)
    assert credit_of(tenant).amount_micros == 10_000_000 - 900
    assert billing.ledger_audit() == []


def test_a_key_cap_refuses_a_hold_and_rolls_over_at_the_tenants_midnight():
    tenant = make_tenant("t", credit="100", wallet=None)
    tenant.timezone = "Asia/Shanghai"
    tenant.save()
    key = make_key(tenant)
    caps = billing.CapPolicy(key.key_id, daily_cap_micros=1_000_000, monthly_cap_micros=None, timezone="Asia/Shanghai")
    late = datetime(2026, 3, 1, 15, 59, tzinfo=timezone.utc)  # 23:59 in Shanghai, March 1st
    open_hold(tenant, key="a", amount=800_000, caps=caps, now=late)
    billing.hold_settle(hold_key="a", charge_micros=800_000)
    with pytest.raises(billing.Refused, match="daily spending cap"):
        open_hold(tenant, key="b", amount=300_000, caps=caps, now=late)
    assert credit_of(tenant).held_micros == 0  # the refused hold left nothing behind
    after_midnight = datetime(2026, 3, 1, 16, 1, tzinfo=timezone.utc)  # 00:01 March 2nd in Shanghai
    open_hold(tenant, key="c", amount=300_000, caps=caps, now=after_midnight)
    days = dict(KeySpend.objects.filter(period="day").values_list("starts_on", "spent_micros"))
    assert days == {datetime(2026, 3, 1).date(): 800_000, datetime(2026, 3, 2).date(): 0}


def test_a_monthly_cap_rolls_over_on_the_first():
    tenant = make_tenant("t", credit="100", wallet=None)
    key = make_key(tenant)
    caps = billing.CapPolicy(key.key_id, daily_cap_micros=None, monthly_cap_micros=1_000_000)
    open_hold(tenant, key="a", amount=1_000_000, caps=caps, now=datetime(2026, 1, 31, 23, 0, tzinfo=timezone.utc))
    with pytest.raises(billing.Refused, match="monthly spending cap"):
        open_hold(tenant, key="b", amount=1, caps=caps, now=datetime(2026, 1, 31, 23, 30, tzinfo=timezone.utc))
    open_hold(tenant, key="c", amount=1_000_000, caps=caps, now=datetime(2026, 2, 1, 0, 0, tzinfo=timezone.utc))


def test_reconciliation_settles_abandoned_holds_for_their_prompt_once():
    tenant = make_tenant("t", credit="10", wallet=None)
    open_hold(tenant, key="dead", amount=2_000_000, floor=150_000)
    long_ago = datetime(2020, 1, 1, tzinfo=timezone.utc)
    Hold.objects.filter(hold_key="dead").update(created_at=long_ago, renewed_at=long_ago)
    open_hold(tenant, key="alive", amount=1_000_000)
    Hold.objects.filter(hold_key="alive").update(created_at=long_ago)  # old, but its request renewed the lease
    assert billing.holds_reconcile(older_than_s=60) == {"settled": 1}
    assert billing.holds_reconcile(older_than_s=60) == {"settled": 0}
    assert Hold.objects.get(hold_key="dead").charged_micros == 150_000
    assert Hold.objects.get(hold_key="alive").status == "open"
    assert credit_of(tenant).held_micros == 1_000_000


def test_a_settle_after_reconciliation_charges_the_rest_once_as_its_own_entry():
    tenant = make_tenant("t", credit="10", wallet=None)
    caps = billing.CapPolicy(key_id=9, daily_cap_micros=5_000_000, monthly_cap_micros=None)
    open_hold(tenant, key="slow", amount=2_000_000, floor=150_000, caps=caps)
    assert billing.holds_reconcile(older_than_s=0) == {"settled": 1}
    ended = billing.hold_settle(hold_key="slow", charge_micros=1_000_000)
    assert ended is not None and ended.charged_micros == 1_000_000
    assert billing.hold_settle(hold_key="slow", charge_micros=1_000_000) is None  # exactly once
    assert billing.hold_release(hold_key="slow") is None
    entries = sorted(LedgerEntry.objects.filter(kind="usage").values_list("amount_micros", flat=True))
    assert entries == [-850_000, -150_000]
    assert credit_of(tenant).amount_micros == 9_000_000 and credit_of(tenant).held_micros == 0
    assert KeySpend.objects.get(key_id=9, period="day").spent_micros == 1_000_000
    assert billing.ledger_audit() == []


def test_audit_finds_a_settled_hold_whose_charge_is_not_its_ledger_entry_and_key_spend_that_does_not_add_up():
    tenant = make_tenant("t", credit="10", wallet=None)
    open_hold(tenant, key="r1", amount=1_000, caps=billing.CapPolicy(key_id=3, daily_cap_micros=10_000, monthly_cap_micros=None))
    billing.hold_settle(hold_key="r1", charge_micros=700)
    assert billing.ledger_audit() == []
    Hold.objects.filter(hold_key="r1").update(charged_micros=600)
    KeySpend.objects.filter(key_id=3, period="month").update(spent_micros=1)
    found = billing.ledger_audit()
    assert {"request_id": "r1", "balance_id": credit_of(tenant).pk, "charged_micros": 600, "usage_entries_micros": 700} in found
    assert any(m.get("key_id") == 3 and m["period"] == "month" for m in found)


def test_audit_ledger_finds_a_balance_that_does_not_add_up(capsys):
    tenant = make_tenant("t", credit="5", wallet=None)
    call_command("audit_ledger", "--json")
    assert '"ok": true' in capsys.readouterr().out
    Balance.objects.filter(tenant=tenant, kind="credit").update(amount_micros=6_000_000)
    with pytest.raises(SystemExit) as exited:
        call_command("audit_ledger", "--json")
    assert exited.value.code == 1
    assert '"ok": false' in capsys.readouterr().out


@pytest.mark.parametrize("after_s, settled", [(900.0, 0), (50.0, 1)])
def test_reconcile_holds_defaults_to_the_setting(settings, after_s, settled):
    from tests.common.test_commands import run_json

    settings.HOLD_RECONCILE_AFTER_S = after_s
    tenant = make_tenant("t", credit="10", wallet=None)
    open_hold(tenant, key="quiet", amount=1_000)
    a_while_ago = datetime.now(timezone.utc) - timedelta(seconds=100)
    Hold.objects.filter(hold_key="quiet").update(created_at=a_while_ago, renewed_at=a_while_ago)
    assert run_json("reconcile_holds") == {"settled": settled}


def test_balance_json_shows_what_open_holds_reserve():
    from tests.common.test_commands import run_json

    tenant = make_tenant("t", credit="10", wallet=None)
    open_hold(tenant, key="r", amount=2_500)
    assert run_json("balance", "t")["credit"] == {"currency": "USD", "amount_micros": 10_000_000, "held_micros": 2_500}
