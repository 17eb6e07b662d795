"""On PostgreSQL, a hold opens and ends in one server-side function call each (billing migration
0011). These tests hold the functions to the portable SQL that SQLite runs: the same sequence of
opens, refusals, settles, releases and reconciliations gives the same money on both; and 32
threads opening and settling at once never overspend and leave a ledger that adds up."""

import asyncio
import threading
from datetime import datetime, timezone

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from billing import services as billing
from billing.models import Balance, Hold, KeySpend, LedgerEntry
from common.db import db_threads_disconnect, loop_connections_close
from tests.billing.money_state import money_state
from tests.conftest import make_tenant

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True, scope="module")
def _connections_closed():
    """The event loops' connections and the database threads' closed before the test database
    is dropped."""
    yield
    loop_connections_close()
    db_threads_disconnect()


def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the money functions are PostgreSQL's; SQLite runs the portable SQL they are compared with")


class Path:
    """One implementation of the money steps, for a tenant and key of its own."""

    def __init__(self, name: str, *, open_, end, key_id: int):
        self.name, self.tenant, self.key_id = name, make_tenant(name, credit="10", wallet=None), key_id
        self._open, self._end = open_, end

    def open(self, key: str, amount: int, *, floor: int = 0, cap_amount: int | None = None, daily=None, monthly=None):
        caps = billing.CapPolicy(self.key_id if (daily, monthly) != (None, None) else None, daily, monthly)
        try:
            self._open(
                hold_key=f"{self.name}-{key}",
                request_id=f"{self.name}-{key}",
                tenant_id=self.tenant.pk,
                kind="credit",
                model="m",
                amount_micros=amount,
                floor_micros=floor,
                cap_amount_micros=amount if cap_amount is None else cap_amount,
                caps=caps,
                now=NOW,
            )
        except billing.Refused as refused:
            return ("refused", refused.which, str(refused))
        return "held"

    def end(self, key: str, charge: int, *, status="settled", note="", reconcile=False):
        ended = self._end(f"{self.name}-{key}", charge_micros=charge, status=status, note=note, is_reconciliation=reconcile)
        return None if ended is None else (ended.request_id.removeprefix(f"{self.name}-"), ended.status, ended.charged_micros)

    def state(self) -> dict:
        return money_state(self.tenant, self.key_id, f"{self.name}-")


def sequence(path: Path) -> list:
    """Every rule of the money steps, once: returns what each step answered."""
    out = [
        path.open("a", 3_000_000, floor=100_000, daily=5_000_000, monthly=6_000_000),
        path.open("b", 4_000_000, daily=5_000_000, monthly=6_000_000),  # the daily cap refuses
        path.open("c", 4_000_000, cap_amount=1_000, daily=None, monthly=9_000_000),
        path.open("d", 4_000_000),  # the balance refuses: 10 - 3 - 4 = 3 left
        path.open("e", 2_500_000, cap_amount=2_500_000, daily=9_000_000, monthly=5_000_000),  # the monthly cap refuses
        path.open("f", 0),  # a request that may cost nothing
        path.end("a", 5_000_000, note="over the hold"),  # clamped to the hold; cap charge = its share
        path.end("a", 1, note="again"),  # exactly once
        path.end("a", 0, status="released"),
        path.end("c", 1_234_567),
        path.open("g", 2_000_000, floor=150_000, cap_amount=1_001, daily=5_000_000, monthly=6_000_000),
        path.end("g", 150_000, note="settled by reconciliation", reconcile=True),
        path.end("g", 1_333_333, note="late"),  # the rest, as its own entry, once
        path.end("g", 2_000_000, note="late again"),
        path.open("h", 1_000_000, floor=900_000),
        path.end("h", 900_000, reconcile=True),
        path.open("i", 3_532_100),  # takes all that is free
        path.end("h", 1_000_000, note="late but broke"),  # owed 100_000, only what is free is charged
        path.end("i", 0, status="released"),
        path.end("f", 0),
        path.end("nobody", 5),
        path.open("j", 999_999_999),
    ]
    return out


def test_the_postgresql_functions_and_the_portable_sql_give_the_same_money():
    postgresql_only()
    functions = Path("fn", open_=billing._hold_open_pg, end=billing._end_pg, key_id=101)
    portable = Path("sql", open_=billing._hold_open_sql, end=billing._end_sql, key_id=202)
    answers = sequence(functions)
    assert answers == sequence(portable)
    assert functions.state() == portable.state()
    assert [a[1] for a in answers if isinstance(a, tuple) and a[0] == "refused"] == ["daily_cap", "credit", "monthly_cap", "credit"]
    assert billing.ledger_audit() == []


def test_the_same_sequence_through_the_entry_points_adds_up(caplog):
    """What the relay calls (PostgreSQL functions or SQLite's SQL), with the warnings it logs."""

    def end(hold_key, **kwargs):
        return billing._end(hold_key, **kwargs)

    path = Path("main", open_=billing.hold_open, end=end, key_id=303)
    answers = sequence(path)
    assert answers[6] == ("a", "settled", 3_000_000) and answers[7] is None and answers[8] is None
    assert answers[12] == ("g", "settled", 1_333_333) and answers[13] is None
    assert answers[17] is None  # owed 100_000 with nothing free: nothing charged
    assert "cost 5000000 but only 3000000 could be charged" in caplog.text
    assert "owed 100000 but only 0 could be charged" in caplog.text
    state = path.state()
    assert state["balance"] == (10_000_000 - 3_000_000 - 1_234_567 - 1_333_333 - 900_000, 0)
    assert billing.ledger_audit() == []


def test_on_postgresql_each_money_step_is_one_statement():
    postgresql_only()
    tenant = make_tenant("t", credit="10", wallet=None)
    caps = billing.CapPolicy(key_id=5, daily_cap_micros=10_000_000, monthly_cap_micros=None)
    with CaptureQueriesContext(connection) as queries:
        billing.hold_open(
            hold_key="r",
            request_id="r",
            tenant_id=tenant.pk,
            kind="credit",
            model="m",
            amount_micros=1_000,
            floor_micros=0,
            cap_amount_micros=1_000,
            caps=caps,
        )
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        assert billing.hold_settle(hold_key="r", charge_micros=700) is not None
        assert billing.hold_settle(hold_key="r", charge_micros=700) is None
    assert len(queries) == 2
    assert KeySpend.objects.get(key_id=5, period="day").spent_micros == 700


def test_a_refusal_inside_a_callers_transaction_leaves_that_transaction_usable():
    tenant = make_tenant("t", credit="1", wallet=None)
    with transaction.atomic():
        with pytest.raises(billing.Refused, match="Insufficient Credit balance: 1 USD available"):
            billing.hold_open(
                hold_key="big",
                request_id="big",
                tenant_id=tenant.pk,
                kind="credit",
                model="m",
                amount_micros=2_000_000,
                floor_micros=0,
                cap_amount_micros=2_000_000,
                caps=billing.CapPolicy(None, None, None),
            )
        assert Balance.objects.get(tenant=tenant, kind="credit").held_micros == 0
    assert not Hold.objects.exists()


def test_32_threads_opening_and_settling_at_once_never_overspend_and_the_ledger_balances():
    """Each thread opens and settles holds in turn against a balance and a key's daily cap that
    afford a fraction of them; settles charge more than the hold, exactly it, less, or release."""
    postgresql_only()
    tenant = make_tenant("busy", credit="0.05", wallet=None)  # 50_000 micros
    caps = billing.CapPolicy(key_id=77, daily_cap_micros=40_000, monthly_cap_micros=None)
    outcomes: list = []
    errors: list = []

    def worker(n: int) -> None:
        try:
            for i in range(6):
                key = f"t{n}-{i}"
                try:
                    billing.hold_open(
                        hold_key=key,
                        request_id=key,
                        tenant_id=tenant.pk,
                        kind="credit",
                        model="m",
                        amount_micros=1_000,
                        floor_micros=100,
                        cap_amount_micros=1_000,
                        caps=caps,
                    )
                except billing.Refused as refused:
                    outcomes.append(refused.which)
                    continue
                if i % 4 == 3:
                    billing.hold_release(hold_key=key)
                    outcomes.append("released")
                else:
                    ended = billing.hold_settle(hold_key=key, charge_micros=(1_500, 1_000, 400)[i % 4])
                    outcomes.append(ended.charged_micros)
                    assert billing.hold_settle(hold_key=key, charge_micros=1) is None
        except Exception as error:  # reported below: an assertion in a thread would be lost
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    charged = sum(o for o in outcomes if isinstance(o, int))
    assert "daily_cap" in outcomes or "credit" in outcomes  # the limits were reached
    assert charged <= 40_000
    balance = Balance.objects.get(tenant=tenant, kind="credit")
    assert (balance.amount_micros, balance.held_micros) == (50_000 - charged, 0)
    usage = -sum(LedgerEntry.objects.filter(kind="usage").values_list("amount_micros", flat=True))
    assert usage == charged
    spend = KeySpend.objects.get(key_id=77, period="day")
    assert (spend.spent_micros, spend.held_micros) == (charged, 0)
    assert not Hold.objects.filter(status="open").exists()
    assert billing.ledger_audit() == []


# --- batches (billing migration 0012): what arrives together goes in one call ----------------

BATCH_CAPS = dict(daily=6_000_000, monthly=5_500_000)
BATCH_OPENS = [  # (key, amount, cap amount): one balance, one key, the same caps: one group
    ("1", 3_000_000, 3_000_000),  # held
    ("2", 4_000_000, 4_000_000),  # the daily cap refuses (3 + 4 > 6)
    ("3", 2_000_000, 2_000_000),  # held
    ("4", 6_000_000, 1_000),  # the balance refuses (5 left)
    ("5", 1_000_000, 1_000_000),  # the monthly cap refuses (6 > 5.5), the daily one would not
    ("6", 500_000, 500_000),  # held
    ("7", 0, 0),  # a request that may cost nothing
    ("8", 100, 100),  # the monthly cap refuses again
]
BATCH_ENDS = [  # (key, charge, status)
    ("1", 5_000_000, "settled"),  # clamped to the hold
    ("3", 0, "released"),
    ("6", 400_000, "settled"),
    ("7", 0, "settled"),
    ("missing", 5, "settled"),
    ("1", 1, "settled"),  # ended already: nothing
    ("6", 0, "released"),
]


def _batch_open_args(tenant, key_id: int, prefix: str, key: str, amount: int, cap_amount: int) -> dict:
    return dict(
        hold_key=prefix + key,
        request_id=prefix + key,
        tenant_id=tenant.pk,
        kind="credit",
        model="m",
        amount_micros=amount,
        floor_micros=amount // 10,
        cap_amount_micros=cap_amount,
        caps=billing.CapPolicy(key_id, BATCH_CAPS["daily"], BATCH_CAPS["monthly"]),
        now=NOW,
    )


def _answer(result, prefix: str):
    if isinstance(result, billing.Refused):  # its text reads the balance after the batch: not compared
        return ("refused", result.which)
    if isinstance(result, billing.Ended):
        return (result.request_id.removeprefix(prefix), result.status, result.charged_micros)
    return "held" if isinstance(result, int) else result


def test_holds_opened_and_ended_together_give_what_they_give_one_after_the_other():
    """On the event loop, calls that arrive while one is on its way go together in one call of
    tokenhub_hold_open_many / tokenhub_hold_end_many (PostgreSQL), or in one transaction
    (SQLite); the answers and the money are those of the same calls made one after the other
    (the sync functions, on a tenant of its own)."""
    alone, together = make_tenant("alone", credit="10", wallet=None), make_tenant("together", credit="10", wallet=None)

    serial = []
    for key, amount, cap_amount in BATCH_OPENS:
        try:
            serial.append(_answer(billing.hold_open(**_batch_open_args(alone, 11, "s-", key, amount, cap_amount)), "s-"))
        except billing.Refused as refused:
            serial.append(_answer(refused, "s-"))
    for key, charge, status in BATCH_ENDS:
        serial.append(_answer(billing._end("s-" + key, charge_micros=charge, status=status), "s-"))

    async def at_once():
        opens = await asyncio.gather(
            *(billing.ahold_open(**_batch_open_args(together, 22, "t-", *item)) for item in BATCH_OPENS), return_exceptions=True
        )
        ends = await asyncio.gather(
            *(
                billing.ahold_settle(hold_key="t-" + key, charge_micros=charge)
                if status == "settled"
                else billing.ahold_release(hold_key="t-" + key)
                for key, charge, status in BATCH_ENDS
            ),
            return_exceptions=True,
        )
        return [_answer(result, "t-") for result in (*opens, *ends)]

    assert asyncio.run(at_once()) == serial
    assert [a[1] for a in serial if isinstance(a, tuple) and a[0] == "refused"] == ["daily_cap", "credit", "monthly_cap", "monthly_cap"]
    assert money_state(together, 22, "t-") == money_state(alone, 11, "s-")
    assert billing.ledger_audit() == []


def test_a_fault_of_one_item_fails_only_that_item(caplog):
    """One item of a batch that cannot be stored (its hold key is taken) gets its error; the
    others get their holds. On PostgreSQL the batch fails as a whole and is retried item by
    item; on SQLite the item's savepoint is undone and the transaction goes on."""
    tenant = make_tenant("faulty", credit="10", wallet=None)
    caps = billing.CapPolicy(None, None, None)
    args = dict(tenant_id=tenant.pk, kind="credit", model="m", amount_micros=1_000, floor_micros=0, cap_amount_micros=1_000, caps=caps)
    billing.hold_open(hold_key="taken", request_id="taken", **args)

    async def at_once():
        return await asyncio.gather(
            *(billing.ahold_open(hold_key=key, request_id=key, **args) for key in ("first", "a", "taken", "c")), return_exceptions=True
        )

    first, a, taken, c = asyncio.run(at_once())
    assert all(isinstance(hold_id, int) for hold_id in (first, a, c))
    assert isinstance(taken, IntegrityError)
    if connection.vendor == "postgresql":
        assert "opening 3 holds together failed; opening each alone" in caplog.text
    assert sorted(Hold.objects.filter(balance__tenant=tenant).values_list("hold_key", flat=True)) == ["a", "c", "first", "taken"]
    assert Balance.objects.get(tenant=tenant, kind="credit").held_micros == 4_000
    assert billing.ledger_audit() == []


def test_many_requests_on_one_loop_and_threads_beside_them_never_overspend_and_never_deadlock(caplog):
    """64 requests on one event loop (their opens and ends batched) and 8 threads making the same
    calls one at a time, on two tenants' credit and wallet balances and one key's daily cap: the
    caps hold, every hold ends, the ledger adds up, and no batch ever failed (a deadlock between
    a batch and a single call would have: PostgreSQL breaks it by failing one)."""
    tenants = [make_tenant("busy-a", credit="0.05", wallet="0.05"), make_tenant("busy-b", credit="0.05", wallet="0.05")]
    caps = {tenant.pk: billing.CapPolicy(key_id=900 + tenant.pk, daily_cap_micros=60_000, monthly_cap_micros=None) for tenant in tenants}
    outcomes: list = []
    errors: list = []

    def args(n: int, i: int, prefix: str) -> dict:
        tenant = tenants[n % 2]
        key = f"{prefix}{n}-{i}"
        return dict(
            hold_key=key, request_id=key, tenant_id=tenant.pk, kind=("credit", "wallet")[(n // 2) % 2], model="m",
            amount_micros=1_000, floor_micros=100, cap_amount_micros=1_000, caps=caps[tenant.pk],
        )  # fmt: skip

    async def request(n: int) -> None:
        for i in range(5):
            try:
                await billing.ahold_open(**args(n, i, "loop"))
            except billing.Refused as refused:
                outcomes.append(refused.which)
                continue
            balance = (tenants[n % 2].pk, ("credit", "wallet")[(n // 2) % 2])  # the relay names it: one balance per batch
            if i % 4 == 3:
                await billing.ahold_release(hold_key=f"loop{n}-{i}", balance=balance if n % 3 else None)
                outcomes.append("released")
            else:
                charge = (1_500, 1_000, 400)[i % 4]
                ended = await billing.ahold_settle(hold_key=f"loop{n}-{i}", charge_micros=charge, balance=balance if n % 3 else None)
                outcomes.append(ended.charged_micros)

    def thread(n: int) -> None:
        try:
            for i in range(5):
                try:
                    billing.hold_open(**args(n, i, "thread"))
                except billing.Refused as refused:
                    outcomes.append(refused.which)
                    continue
                outcomes.append(billing.hold_settle(hold_key=f"thread{n}-{i}", charge_micros=900).charged_micros)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    async def loop_requests():
        await asyncio.gather(*(request(n) for n in range(64)))

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    asyncio.run(loop_requests())
    for t in threads:
        t.join()
    assert errors == []
    assert "together failed" not in caplog.text
    assert {"credit", "wallet", "daily_cap"} & set(outcomes)  # the limits were reached
    for tenant in tenants:
        spend = KeySpend.objects.get(key_id=900 + tenant.pk, period="day")
        assert spend.held_micros == 0 and spend.spent_micros <= 60_000
        for kind in ("credit", "wallet"):
            balance = Balance.objects.get(tenant=tenant, kind=kind)
            assert balance.held_micros == 0 and balance.amount_micros >= 0
    assert not Hold.objects.filter(status="open").exists()
    charged = sum(o for o in outcomes if isinstance(o, int))
    assert -sum(LedgerEntry.objects.filter(kind="usage").values_list("amount_micros", flat=True)) == charged
    assert billing.ledger_audit() == []
