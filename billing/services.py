"""Billing services. A balance changes only here: each change is one ledger entry, written in
the same transaction that moves the balance (its row locked), under a unique idempotency key,
so applying the same event twice changes nothing the second time.

Requests pay in two steps:
    hold_open   before sending: reserve the most the request can cost against the balance and
                the key's day/month caps, or refuse (nothing is sent upstream)
    hold_settle after the answer: one usage entry for the real cost; the hold is released
    hold_release when nothing was delivered (every attempt failed)
A hold ends exactly once: a second settle or release of the same hold does nothing. Holds whose
process died are ended by `holds_reconcile` (a periodic job).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from contextlib import closing, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import DatabaseError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from channels.strategies import MODES
from common.batching import Batched
from common.db import on_sqlite, pg_on_loop, pg_row, run_db, run_db_writer, sqlite_writer_turn
from common.decimals import decimal_for_field

from . import ratecard
from .models import Balance, BalanceKind, ExchangeRate, Group, Hold, KeySpend, LedgerEntry, Price, RedemptionBatch, RedemptionCode
from .money import MAX_BALANCE_MICROS, MICROS, ceil_div, format_micros, parse_micros

log = logging.getLogger(__name__)

DEFAULT_CURRENCY = {BalanceKind.CREDIT: "USD", BalanceKind.WALLET: "CNY"}
BALANCE_LABEL = {BalanceKind.CREDIT: "Credit", BalanceKind.WALLET: "Wallet"}


class Refused(Exception):
    """A hold could not be made; the message says which balance or cap, what is left and what is needed."""

    def __init__(self, message: str, *, which: str) -> None:
        super().__init__(message)
        self.which = which  # "credit", "wallet", "daily_cap", "monthly_cap"


# --- balances and the ledger ---------------------------------------------------------------


def balances_open(*, tenant_id: int) -> list[Balance]:
    """Both balances of a tenant, made (empty, in the default currencies) the first time
    billing meets the tenant. Accounts knows nothing of money: billing opens them lazily."""
    existing = {b.kind: b for b in Balance.objects.filter(tenant_id=tenant_id)}
    for kind in (BalanceKind.CREDIT, BalanceKind.WALLET):
        if kind not in existing:
            with transaction.atomic():
                existing[kind] = Balance.objects.get_or_create(
                    tenant_id=tenant_id, kind=kind, defaults={"currency": DEFAULT_CURRENCY[kind]}
                )[0]
    return [existing[BalanceKind.CREDIT], existing[BalanceKind.WALLET]]


_KINDS = frozenset(BalanceKind.values)  # the enum's `values` builds a new list at each read


def _kind(kind: str) -> str:
    if kind not in _KINDS:
        raise ValueError(f"balance must be one of {', '.join(BalanceKind.values)}, not {kind!r}")
    return kind


@transaction.atomic
def balance_credit(
    *,
    tenant_id: int,
    kind: str,
    idempotency_key: str,
    amount: str | Decimal | None = None,
    amount_micros: int | None = None,
    entry_kind: str = LedgerEntry.Kind.ADJUSTMENT,
    note: str = "",
) -> LedgerEntry:
    """Add (or, with a negative amount, take away) money. Returns the entry; the same
    idempotency key again returns the first entry and changes nothing."""
    if amount_micros is None:
        amount_micros = parse_micros(amount, what="amount")
    if amount_micros == 0:
        raise ValueError("amount must not be zero")
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    balances_open(tenant_id=tenant_id)
    balance = Balance.objects.select_for_update().get(tenant_id=tenant_id, kind=_kind(kind))
    after = balance.amount_micros + amount_micros
    if after > MAX_BALANCE_MICROS:
        raise ValueError(f"{BALANCE_LABEL[balance.kind]} cannot hold more than {format_micros(MAX_BALANCE_MICROS)} {balance.currency}")
    if after < balance.held_micros:
        raise ValueError(
            f"{BALANCE_LABEL[balance.kind]} has {format_micros(balance.amount_micros - balance.held_micros)} "
            f"{balance.currency} available; cannot take {format_micros(-amount_micros)}"
        )
    entry = LedgerEntry.objects.create(
        balance=balance,
        kind=entry_kind,
        amount_micros=amount_micros,
        balance_after_micros=after,
        idempotency_key=idempotency_key,
        note=note[:500],
    )
    Balance.objects.filter(pk=balance.pk).update(amount_micros=after)
    return entry


def ledger_audit() -> list[dict]:
    """Every way the money does not add up, read from one consistent snapshot (so traffic
    running meanwhile cannot make a false mismatch):
    - a balance's amount differs from the sum of its entries, or its held amount from its open holds;
    - an entry's running balance_after does not add up;
    - a settled hold's charge differs from the usage entries of its request on its balance;
    - a key's day or month spend differs from its holds' charges, or its held amount from its open holds."""
    if connection.in_atomic_block:  # inside a caller's transaction: that one is the snapshot
        return _audit()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # must be the transaction's first statement
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # SQLite: the deferred transaction's first read fixes the snapshot for all that follow
        return _audit()


def _audit() -> list[dict]:
    mismatches: list[dict] = []
    sums = dict(LedgerEntry.objects.values_list("balance_id").annotate(total=Sum("amount_micros")))
    open_held = dict(Hold.objects.filter(status=Hold.Status.OPEN).values_list("balance_id").annotate(total=Sum("amount_micros")))
    for balance_id, tenant_id, kind, amount, held in Balance.objects.values_list("id", "tenant_id", "kind", "amount_micros", "held_micros"):
        total = sums.get(balance_id) or 0
        if total != amount:
            mismatches.append({"tenant_id": tenant_id, "balance": kind, "amount_micros": amount, "ledger_micros": total})
        if (open_held.get(balance_id) or 0) != held:
            mismatches.append(
                {"tenant_id": tenant_id, "balance": kind, "held_micros": held, "open_holds_micros": open_held.get(balance_id) or 0}
            )
    running: dict[int, int] = {}
    usage: dict[tuple[str, int], int] = {}
    for balance_id, amount, after, entry_id, kind, request_id in (
        LedgerEntry.objects.order_by("id")
        .values_list("balance_id", "amount_micros", "balance_after_micros", "id", "kind", "request_id")
        .iterator(chunk_size=5000)
    ):
        running[balance_id] = running.get(balance_id, 0) + amount
        if running[balance_id] != after:
            mismatches.append({"entry_id": entry_id, "balance_after_micros": after, "running_micros": running[balance_id]})
            running[balance_id] = after  # report each break once
        if kind == LedgerEntry.Kind.USAGE and request_id:
            usage[(request_id, balance_id)] = usage.get((request_id, balance_id), 0) - amount
    charged: dict[tuple[str, int], int] = {}
    spent: dict[tuple[int, str, date], int] = {}
    spend_held: dict[tuple[int, str, date], int] = {}
    for request_id, balance_id, status, charge, key_id, day, month, cap_amount, cap_charge in Hold.objects.values_list(
        "request_id", "balance_id", "status", "charged_micros", "key_id", "day", "month", "cap_amount_micros", "cap_charged_micros"
    ).iterator(chunk_size=5000):
        if status == Hold.Status.SETTLED:
            charged[(request_id, balance_id)] = charged.get((request_id, balance_id), 0) + charge
        if key_id is None or day is None:
            continue
        target = spend_held if status == Hold.Status.OPEN else spent
        amount = cap_amount if status == Hold.Status.OPEN else cap_charge
        for period, starts_on in ((KeySpend.Period.DAY, day), (KeySpend.Period.MONTH, month)):
            target[(key_id, period, starts_on)] = target.get((key_id, period, starts_on), 0) + amount
    for request_id, balance_id in sorted(set(usage) | set(charged)):
        if usage.get((request_id, balance_id), 0) != charged.get((request_id, balance_id), 0):
            mismatches.append(
                {
                    "request_id": request_id,
                    "balance_id": balance_id,
                    "charged_micros": charged.get((request_id, balance_id), 0),
                    "usage_entries_micros": usage.get((request_id, balance_id), 0),
                }
            )
    for key_id, period, starts_on, spent_micros, held_micros in KeySpend.objects.values_list(
        "key_id", "period", "starts_on", "spent_micros", "held_micros"
    ):
        key = (key_id, period, starts_on)
        if spent_micros != spent.get(key, 0) or held_micros != spend_held.get(key, 0):
            mismatches.append(
                {
                    "key_id": key_id,
                    "period": period,
                    "starts_on": starts_on,
                    "spent_micros": spent_micros,
                    "held_micros": held_micros,
                    "holds_charged_micros": spent.get(key, 0),
                    "open_holds_micros": spend_held.get(key, 0),
                }
            )
    return mismatches


# --- prices, groups, exchange rates --------------------------------------------------------


def price_set(
    *,
    model: str,
    input_usd_per_m: str | Decimal | None = None,
    output_usd_per_m: str | Decimal | None = None,
    cached_input_usd_per_m: str | Decimal | None = None,
    cache_write_usd_per_m: str | Decimal | None = None,
    request_usd: str | Decimal | None = None,
    tiers: list[dict] | None = None,
    is_free: bool = False,
    image_usd: str | Decimal | None = None,
    second_usd: str | Decimal | None = None,
) -> Price:
    # a model of the media endpoints may be priced per request, image or second alone
    is_media = any(v is not None for v in (request_usd, image_usd, second_usd)) and input_usd_per_m is None and output_usd_per_m is None
    if not is_free and not is_media and (input_usd_per_m is None or output_usd_per_m is None):
        raise ValueError("a price needs --input and --output (or --free)")
    values = {
        "input_micros_per_m": parse_micros(input_usd_per_m or 0, what="input price"),
        "output_micros_per_m": parse_micros(output_usd_per_m or 0, what="output price"),
        "cached_input_micros_per_m": (
            parse_micros(cached_input_usd_per_m, what="cached input price") if cached_input_usd_per_m is not None else None
        ),
        "cache_write_micros_per_m": (
            parse_micros(cache_write_usd_per_m, what="cache write price") if cache_write_usd_per_m is not None else None
        ),
        "request_micros": parse_micros(request_usd or 0, what="request price"),
        "image_micros": parse_micros(image_usd or 0, what="image price"),
        "second_micros": parse_micros(second_usd or 0, what="second price"),
        "is_free": is_free,
    }
    if tiers is not None:
        values["tiers"] = tiers
    price_values_check(values)
    price, _ = Price.objects.update_or_create(model=model, defaults=values)
    ratecard.invalidate()
    return price


PRICE_FIELDS = (
    "input_micros_per_m",
    "output_micros_per_m",
    "cached_input_micros_per_m",
    "cache_write_micros_per_m",
    "request_micros",
    "image_micros",
    "second_micros",
)


def price_values_check(values: dict) -> None:
    """Refuse a negative price or tier (the database refuses them too): raises ValueError
    naming the field. `values` holds Price fields; absent ones are not checked."""
    for name in PRICE_FIELDS:
        value = values.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"{name.replace('_micros_per_m', '').replace('_micros', '').replace('_', ' ')} price must not be negative")
    tiers = values.get("tiers")
    if tiers is None:
        return
    if not isinstance(tiers, list):
        raise ValueError("tiers must be a list")
    for number, tier in enumerate(tiers, 1):
        if not isinstance(tier, dict) or "above_prompt_tokens" not in tier:
            raise ValueError(f"tier {number} needs above_prompt_tokens")
        for name, value in tier.items():
            if name != "above_prompt_tokens" and name not in PRICE_FIELDS:
                raise ValueError(f"tier {number} has an unknown field {name!r}")
            if type(value) is not int or value < 0:
                raise ValueError(f"tier {number}: {name} must be a non-negative integer")


def exchange_rate_set(*, currency: str, units_per_usd: str | Decimal) -> ExchangeRate:
    currency = currency.strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency {currency!r} must be a 3-letter code")
    field = ExchangeRate._meta.get_field("units_per_usd")
    rate = decimal_for_field(units_per_usd, field=field, what="rate", minimum=Decimal(1).scaleb(-field.decimal_places))
    if currency == "USD" and rate != 1:
        raise ValueError("rates are units of a currency per 1 USD: USD's is always 1")
    obj, _ = ExchangeRate.objects.update_or_create(currency=currency, defaults={"units_per_usd": rate})
    ratecard.invalidate()
    return obj


def group_set(*, name: str, ratio: str | Decimal | None = None, mode: str | None = None) -> Group:
    """A price group's ratio (every price times it) and, optionally, its default routing mode."""
    values: dict = {}
    if ratio is not None:
        values["ratio"] = decimal_for_field(ratio, field=Group._meta.get_field("ratio"), what="group ratio", minimum=Decimal(0))
    if mode is not None:
        if mode and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        values["mode"] = mode
    group, _ = Group.objects.update_or_create(name=name, defaults=values)
    ratecard.invalidate()
    return group


# --- holds -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapPolicy:
    key_id: int | None
    daily_cap_micros: int | None
    monthly_cap_micros: int | None
    timezone: str = "UTC"


def cap_periods(tz: str, now: datetime | None = None) -> tuple[date, date]:
    """The day and the month (its first day) of `now` in the tenant's time zone (UTC when the
    stored zone is unknown: tenants are validated on save, but a bad row must not refuse keys)."""
    try:
        zone = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown tenant time zone %r: key caps roll over at UTC midnight", tz)
        zone = ZoneInfo("UTC")
    local = (now or timezone.now()).astimezone(zone)
    today = local.date()
    return today, today.replace(day=1)


# The two functions below run twice per request on the /v1 path, so they speak SQL directly
# (one statement per step, no model instances): the ORM's per-query overhead was most of the
# relay's CPU per request (see docs/decisions/002-lean-money-path.md). Same rules, same
# transactions; the tests in tests/billing hold them to it on SQLite and PostgreSQL.


def _for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def _pg_step():
    """What a PostgreSQL money function runs in: nothing of its own in autocommit (the call is its
    own transaction: one round trip); a savepoint inside a caller's transaction, so a refusal
    (raised by the function) undoes only the call and the caller's transaction goes on."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


# SQLSTATEs the PostgreSQL functions raise for a refusal (their work undone with the statement)
_REFUSALS = {"THB01": None, "THB02": KeySpend.Period.DAY, "THB03": KeySpend.Period.MONTH}


def _balance_refused(*, tenant_id: int, kind: str, amount_micros: int) -> Refused:
    balance = next(b for b in balances_open(tenant_id=tenant_id) if b.kind == kind)
    available = balance.amount_micros - balance.held_micros
    return Refused(
        f"Insufficient {BALANCE_LABEL[kind]} balance: {format_micros(max(0, available))} {balance.currency} available, "
        f"this request may cost up to {format_micros(amount_micros)} {balance.currency}. Top up or lower max_tokens.",
        which=kind,
    )


def _cap_refused(*, key_id: int, period: str, starts_on: date, cap: int, cap_amount_micros: int) -> Refused:
    # no row: PostgreSQL's refused call took back the row it had made
    spend = KeySpend.objects.filter(key_id=key_id, period=period, starts_on=starts_on).values_list("spent_micros", "held_micros").first()
    left = max(0, cap - sum(spend or (0, 0)))
    label = "daily" if period == KeySpend.Period.DAY else "monthly"
    return Refused(
        f"This key's {label} spending cap is reached: {format_micros(left)} USD of "
        f"{format_micros(cap)} USD left, this request may cost up to {format_micros(cap_amount_micros)} USD.",
        which=f"{label}_cap",
    )


def hold_open(
    *,
    hold_key: str,
    request_id: str,
    tenant_id: int,
    kind: str,
    model: str,
    amount_micros: int,
    floor_micros: int,
    cap_amount_micros: int,
    caps: CapPolicy,
    now: datetime | None = None,
) -> int:
    """Hold `amount_micros` on the balance and the key's caps, or raise Refused (nothing held).
    Returns the hold's id."""
    open_hold = _hold_open_pg if connection.vendor == "postgresql" else _hold_open_sql
    return open_hold(
        hold_key=hold_key,
        request_id=request_id,
        tenant_id=tenant_id,
        kind=kind,
        model=model,
        amount_micros=amount_micros,
        floor_micros=floor_micros,
        cap_amount_micros=cap_amount_micros,
        caps=caps,
        now=now,
    )


_HOLD_OPEN = "SELECT tokenhub_hold_open(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::date, %s::date, %s, %s, %s)"


def _hold_open_call(
    *,
    hold_key: str,
    request_id: str,
    tenant_id: int,
    kind: str,
    model: str,
    amount_micros: int,
    floor_micros: int,
    cap_amount_micros: int,
    caps: CapPolicy,
    now: datetime | None = None,
) -> tuple[list, dict]:
    """The arguments of tokenhub_hold_open, and what its refusal message needs."""
    day = month = None
    if caps.key_id is not None and (caps.daily_cap_micros is not None or caps.monthly_cap_micros is not None):
        day, month = cap_periods(caps.timezone, now)
    params = [
        hold_key,
        request_id,
        tenant_id,
        _kind(kind),
        model,
        amount_micros,
        min(floor_micros, amount_micros),
        cap_amount_micros,
        caps.key_id,
        day,
        month,
        caps.daily_cap_micros,
        caps.monthly_cap_micros,
        timezone.now(),
    ]
    context = dict(tenant_id=tenant_id, kind=kind, amount_micros=amount_micros, caps=caps, day=day, month=month,
                   cap_amount_micros=cap_amount_micros)
    return params, context


def _refusal_period(error: DatabaseError):
    """Which refusal a function's error is (a KeySpend period, or None for the balance); any other
    error is raised again."""
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate not in _REFUSALS:
        raise error
    return _REFUSALS[sqlstate]


def _open_refused(*, period, tenant_id, kind, amount_micros, caps, day, month, cap_amount_micros) -> Refused:
    if period is None:
        return _balance_refused(tenant_id=tenant_id, kind=kind, amount_micros=amount_micros)
    starts_on, cap = (day, caps.daily_cap_micros) if period == KeySpend.Period.DAY else (month, caps.monthly_cap_micros)
    return _cap_refused(key_id=caps.key_id, period=period, starts_on=starts_on, cap=cap, cap_amount_micros=cap_amount_micros)


def _hold_open_pg(**kwargs) -> int:
    """`hold_open` as one call of tokenhub_hold_open (billing migration 0011)."""
    params, context = _hold_open_call(**kwargs)
    try:
        with _pg_step(), connection.cursor() as cursor:
            cursor.execute(_HOLD_OPEN, params)
            return cursor.fetchone()[0]
    except DatabaseError as error:
        period = _refusal_period(error)
    raise _open_refused(period=period, **context)


async def ahold_open(**kwargs) -> int:
    """`hold_open` from async code (the /v1 path), together with the other openings that arrive
    while one is on its way (decision 016): on PostgreSQL its statement runs on the event loop
    (common.db.pg_row), one batch per balance and key; on SQLite on the one writer thread, one
    batch for all (one writer lock); otherwise `hold_open` runs in a database thread."""
    if not pg_on_loop() and not on_sqlite():
        return await run_db(hold_open, **kwargs)
    if kwargs.get("now") is None:  # one instant for the caps' day and month and a refusal's message
        kwargs["now"] = timezone.now()
    params, context = _hold_open_call(**kwargs)
    try:
        if on_sqlite():
            return await _opens_in_thread.run(None, kwargs)
        # what tokenhub_hold_open_many shares: tenant, kind, key, day, month and the two caps
        return await _opens.run((*params[2:4], *params[8:13]), params)
    except _Refusal as refusal:  # read once the opening is undone
        raise await run_db(_open_refused, period=refusal.period, **context) from None


class _Refusal(Exception):
    """An opening refused, its work undone; `period` is None for the balance, else the KeySpend
    period whose cap refused. Turned into a `Refused` with its message outside the transaction."""

    def __init__(self, period: str | None) -> None:
        super().__init__(period)
        self.period = period


_HOLD_OPEN_MANY = (
    "SELECT tokenhub_hold_open_many(%s::text[], %s::text[], %s, %s, %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],"
    " %s, %s::date, %s::date, %s, %s, %s)"
)
_REFUSAL_CODES = {-1: None, -2: KeySpend.Period.DAY, -3: KeySpend.Period.MONTH}  # tokenhub_hold_open_many's


async def _together_or_alone(items, *, together, alone, doing: str) -> list:
    """Each item's answer: `alone(item)` for a batch of one, else `together(items)` (one call
    for them all); should that fail (a fault of one item fails the batch), each goes alone for
    an answer of its own."""
    if len(items) == 1:
        return [await alone(items[0])]
    try:
        return await together(items)
    except DatabaseError:
        log.warning("%s %d holds together failed; %s each alone", doing, len(items), doing, exc_info=True)
        return [await alone(item) for item in items]


async def _open_many(group: tuple, items) -> list:
    """Each item's hold id, `_Refusal`, or the error it raises: one call of
    tokenhub_hold_open_many for them all (billing migration 0012)."""

    async def together(items) -> list:
        tenant_id, kind, key_id, day, month, day_cap, month_cap = group
        keys, request_ids, _, _, models, amounts, floors, cap_amounts = (list(column) for column in zip(*(p[:8] for p in items)))
        (answers,) = await pg_row(
            _HOLD_OPEN_MANY,
            [keys, request_ids, tenant_id, kind, models, amounts, floors, cap_amounts, key_id, day, month, day_cap, month_cap,
             timezone.now()],
        )
        return [_Refusal(_REFUSAL_CODES[answer]) if answer in _REFUSAL_CODES else answer for answer in answers]

    return await _together_or_alone(items, together=together, alone=_open_one, doing="opening")


async def _open_one(params: list):
    try:
        return (await pg_row(_HOLD_OPEN, params))[0]
    except DatabaseError as error:
        try:
            return _Refusal(_refusal_period(error))
        except DatabaseError as other:  # not a refusal: this item's error
            return other


_opens = Batched(_open_many)


def _hold_open_sql(**kwargs) -> int:
    """`hold_open` as portable SQL in one transaction (SQLite; PostgreSQL runs the same rules in
    tokenhub_hold_open)."""
    if kwargs.get("now") is None:
        kwargs["now"] = timezone.now()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            return _hold_open_with(cursor, **kwargs)
    except _Refusal as refusal:
        raise _open_refused(period=refusal.period, **_hold_open_call(**kwargs)[1]) from None


def _hold_open_with(
    cursor,
    *,
    hold_key: str,
    request_id: str,
    tenant_id: int,
    kind: str,
    model: str,
    amount_micros: int,
    floor_micros: int,
    cap_amount_micros: int,
    caps: CapPolicy,
    now: datetime | None = None,
) -> int:
    """`hold_open`'s statements on `cursor`, inside the caller's transaction, which raising
    `_Refusal` asks it to undo."""
    ops = connection.ops
    started = ops.adapt_datetimefield_value(timezone.now())
    cursor.execute(
        "UPDATE billing_balance SET held_micros = held_micros + %s"
        " WHERE tenant_id = %s AND kind = %s AND amount_micros - held_micros >= %s RETURNING id",
        [amount_micros, tenant_id, _kind(kind), amount_micros],
    )
    row = cursor.fetchone()
    if row is None:
        raise _Refusal(None)
    balance_id = row[0]
    day = month = None
    if caps.key_id is not None and (caps.daily_cap_micros is not None or caps.monthly_cap_micros is not None):
        day, month = cap_periods(caps.timezone, now)
        for period, starts_on, cap in (
            (KeySpend.Period.DAY, day, caps.daily_cap_micros),
            (KeySpend.Period.MONTH, month, caps.monthly_cap_micros),
        ):
            starts = ops.adapt_datefield_value(starts_on)
            cursor.execute(
                "INSERT INTO billing_keyspend (key_id, period, starts_on, spent_micros, held_micros)"
                " VALUES (%s, %s, %s, 0, 0) ON CONFLICT (key_id, period, starts_on) DO NOTHING",
                [caps.key_id, period, starts],
            )
            cursor.execute(
                "UPDATE billing_keyspend SET held_micros = held_micros + %s"
                " WHERE key_id = %s AND period = %s AND starts_on = %s"
                " AND (%s OR spent_micros + held_micros + %s <= %s)",
                [cap_amount_micros, caps.key_id, period, starts, cap is None, cap_amount_micros, cap or 0],
            )
            if cursor.rowcount == 0:
                raise _Refusal(period)  # the caller undoes the balance hold made above
    cursor.execute(
        "INSERT INTO billing_hold (hold_key, request_id, balance_id, key_id, model, amount_micros, floor_micros,"
        " cap_amount_micros, cap_charged_micros, day, month, status, charged_micros, is_reconciled, created_at, renewed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, 0, %s, %s, %s) RETURNING id",
        [
            hold_key,
            request_id,
            balance_id,
            caps.key_id,
            model,
            amount_micros,
            min(floor_micros, amount_micros),
            cap_amount_micros,
            ops.adapt_datefield_value(day),
            ops.adapt_datefield_value(month),
            Hold.Status.OPEN,
            False,
            started,
            started,
        ],
    )
    return cursor.fetchone()[0]


@dataclass(frozen=True, slots=True)
class Ended:
    request_id: str
    status: str
    charged_micros: int


def hold_settle(*, hold_key: str, charge_micros: int, note: str = "") -> Ended | None:
    """End a hold by charging `charge_micros`, at most what was held (and what the balance
    has). Returns what happened, or None when the hold had already ended (exactly once).
    A settle arriving after reconciliation ended the hold charges the difference between
    its cost and what reconciliation charged as an entry of its own, once."""
    return _end(hold_key, charge_micros=charge_micros, status=Hold.Status.SETTLED, note=note)


def hold_release(*, hold_key: str) -> Ended | None:
    return _end(hold_key, charge_micros=0, status=Hold.Status.RELEASED)


def hold_renew(*, hold_key: str) -> bool:
    """Renew an open hold's lease (its request is still running). False if it has ended."""
    return Hold.objects.filter(hold_key=hold_key, status=Hold.Status.OPEN).update(renewed_at=timezone.now()) == 1


def _spend_add(cursor, *, key_id: int, day, month, held_delta: int, spent_delta: int) -> None:
    # Day row first, then month, one statement each: every writer locks the spend rows in this
    # one order (hold_open does too), so two settles never wait on each other crosswise.
    for period, starts_on in ((KeySpend.Period.DAY, day), (KeySpend.Period.MONTH, month)):
        cursor.execute(
            "UPDATE billing_keyspend SET held_micros = held_micros - %s, spent_micros = spent_micros + %s"
            " WHERE key_id = %s AND period = %s AND starts_on = %s",
            [held_delta, spent_delta, key_id, period, starts_on],
        )


def _end(hold_key: str, *, charge_micros: int, status: str, note: str = "", is_reconciliation: bool = False) -> Ended | None:
    if connection.vendor == "postgresql":
        return _end_pg(hold_key, charge_micros=charge_micros, status=status, note=note, is_reconciliation=is_reconciliation)
    return _end_sql(hold_key, charge_micros=charge_micros, status=status, note=note, is_reconciliation=is_reconciliation)


_HOLD_END = "SELECT * FROM tokenhub_hold_end(%s, %s, %s, %s, %s, %s)"


def _end_pg(hold_key: str, *, charge_micros: int, status: str, note: str = "", is_reconciliation: bool = False) -> Ended | None:
    """`_end` as one call of tokenhub_hold_end (billing migration 0011)."""
    with _pg_step(), connection.cursor() as cursor:
        cursor.execute(_HOLD_END, [hold_key, charge_micros, status, note, is_reconciliation, timezone.now()])
        return _ended(cursor.fetchone(), charge_micros=charge_micros, status=status)


def _ended(row, *, charge_micros: int, status: str) -> Ended | None:
    """What tokenhub_hold_end's row says happened."""
    outcome, request_id, charged, held, owed, diff = row
    if outcome == "ended":
        if charged < charge_micros:
            log.warning("request %s cost %d but only %d could be charged (held %d)", request_id, charge_micros, charged, held)
        return Ended(request_id, status, charged)
    if outcome == "late":
        if diff < owed:
            log.warning("request %s settled after reconciliation owed %d but only %d could be charged", request_id, owed, max(diff, 0))
        return Ended(request_id, Hold.Status.SETTLED, charged) if diff > 0 else None
    return None


async def _aend(hold_key: str, *, charge_micros: int, status: str, note: str = "", balance: tuple | None = None) -> Ended | None:
    if not pg_on_loop():
        if on_sqlite():  # one writer lock for every balance: one batch for all
            return await _ends_in_thread.run(None, dict(hold_key=hold_key, charge_micros=charge_micros, status=status, note=note))
        return await run_db(_end, hold_key=hold_key, charge_micros=charge_micros, status=status, note=note)
    return await _ends.run(balance, (hold_key, charge_micros, status, note))


_HOLD_END_MANY = "SELECT * FROM tokenhub_hold_end_many(%s::text[], %s::bigint[], %s::text[], %s::text[], %s)"


async def _end_many(_group, items) -> list:
    """Each item's `Ended` (or None), or the error it raises: one call of tokenhub_hold_end_many
    for them all (billing migration 0012), one balance's (the group) or, without a group, any."""

    async def together(items) -> list:
        keys, charges, statuses, notes = (list(column) for column in zip(*items))
        row = await pg_row(_HOLD_END_MANY, [keys, charges, statuses, notes, timezone.now()])
        return [_ended(answer, charge_micros=charge, status=status) for answer, charge, status in zip(zip(*row), charges, statuses)]

    return await _together_or_alone(items, together=together, alone=lambda item: _end_one(*item), doing="ending")


async def _end_one(hold_key: str, charge_micros: int, status: str, note: str):
    try:
        row = await pg_row(_HOLD_END, [hold_key, charge_micros, status, note, False, timezone.now()])
    except DatabaseError as error:
        return error
    return _ended(row, charge_micros=charge_micros, status=status)


_ends = Batched(_end_many)


def _each_in_one_transaction(step, items: list[dict]) -> list:
    """`step(cursor, **item)` for each item, in order, in one SQLite transaction of its own:
    each item's answer, or what it raised (a refusal or an error undoes that item only: in a
    batch each item is a savepoint of its own). The statements go straight to the connection's
    DB-API cursor (the backend's: it takes %s parameters and counts queries): Django's
    transaction and cursor layers cost twice what SQLite itself does here (decision 017)."""
    if connection.in_atomic_block:
        raise RuntimeError("SQLite's money batches run in a transaction of their own, not inside another")
    connection.ensure_connection()
    raw, errors = connection.connection, connection.wrap_database_errors  # DB-API errors become Django's
    with closing(connection.create_cursor()) as cursor, sqlite_writer_turn(connection):
        try:
            with errors:
                cursor.execute("BEGIN IMMEDIATE")  # the writer lock first: no deadlock with another process
                if len(items) == 1:  # no savepoint: the transaction is the item's
                    answers = [_attempt(step, cursor, items[0])]
                    if isinstance(answers[0], Exception):
                        raw.rollback()
                        return answers
                else:
                    answers = [_in_savepoint(step, cursor, item) for item in items]
                raw.commit()
        except BaseException:
            raw.rollback()
            raise
    return answers


def _attempt(step, cursor, item: dict):
    """The item's answer, or what it raised (its caller raises it; the batch goes on)."""
    try:
        with connection.wrap_database_errors:
            return step(cursor, **item)
    except Exception as error:  # noqa: BLE001
        return error


def _in_savepoint(step, cursor, item: dict):
    cursor.execute("SAVEPOINT item")
    answer = _attempt(step, cursor, item)
    if isinstance(answer, Exception):
        cursor.execute("ROLLBACK TO item")
    cursor.execute("RELEASE item")
    return answer


async def _in_thread_many(step, items) -> list:
    return await run_db_writer(_each_in_one_transaction, step=step, items=list(items))


# SQLite (decisions 016, 017): the same batches, each in one transaction on the one writer
# thread. Not on PostgreSQL's thread path: its endings there would lock balances in arrival order.
_opens_in_thread = Batched(lambda _group, items: _in_thread_many(_hold_open_with, items))
_ends_in_thread = Batched(lambda _group, items: _in_thread_many(_end_with, items))


async def ahold_settle(*, hold_key: str, charge_micros: int, note: str = "", balance: tuple | None = None) -> Ended | None:
    """`hold_settle` from async code (see `ahold_open`). `balance`, the (tenant id, kind) the hold
    was opened on, keeps its batch to that balance: one tenant's busy balance never delays
    another's settles (without it, holds of any balance may share a batch)."""
    return await _aend(hold_key, charge_micros=charge_micros, status=Hold.Status.SETTLED, note=note, balance=balance)


async def ahold_release(*, hold_key: str, balance: tuple | None = None) -> Ended | None:
    """`hold_release` from async code (see `ahold_settle`)."""
    return await _aend(hold_key, charge_micros=0, status=Hold.Status.RELEASED, balance=balance)


@transaction.atomic
def _end_sql(hold_key: str, **kwargs) -> Ended | None:
    """`_end` as portable SQL in one transaction (SQLite; PostgreSQL runs the same rules in
    tokenhub_hold_end)."""
    with connection.cursor() as cursor:
        return _end_with(cursor, hold_key, **kwargs)


def _end_with(cursor, hold_key: str, *, charge_micros: int, status: str, note: str = "", is_reconciliation: bool = False) -> Ended | None:
    """`_end`'s statements on `cursor`, inside the caller's transaction."""
    ops = connection.ops
    cursor.execute(
        "SELECT id, request_id, balance_id, key_id, model, amount_micros, cap_amount_micros, day, month, status,"
        " is_reconciled, charged_micros, cap_charged_micros FROM billing_hold WHERE hold_key = %s" + _for_update(),
        [hold_key],
    )
    row = cursor.fetchone()
    if row is None:
        return None
    hold_id, request_id, balance_id, key_id, model, held, cap_held, day, month, hold_status, is_reconciled, charged, cap_charged = row
    if hold_status != Hold.Status.OPEN:
        if is_reconciled and status == Hold.Status.SETTLED and not is_reconciliation:
            return _late_settle(cursor, row, charge_micros=charge_micros, note=note)
        return None
    cursor.execute("SELECT amount_micros, held_micros FROM billing_balance WHERE id = %s" + _for_update(), [balance_id])
    amount, balance_held = cursor.fetchone()
    # Never more than was held (one request cannot overrun its balance or its key's caps),
    # never below zero nor below what other requests hold.
    charge = max(0, min(charge_micros, held, amount - (balance_held - held)))
    if charge < charge_micros:
        log.warning("request %s cost %d but only %d could be charged (held %d)", request_id, charge_micros, charge, held)
    after = amount - charge
    now = ops.adapt_datetimefield_value(timezone.now())
    if charge:
        cursor.execute(
            "INSERT INTO billing_ledgerentry (balance_id, kind, amount_micros, balance_after_micros,"
            " idempotency_key, request_id, note, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [balance_id, LedgerEntry.Kind.USAGE, -charge, after, f"usage:{request_id}", request_id, (note or model)[:500], now],
        )
    cursor.execute(
        "UPDATE billing_balance SET amount_micros = %s, held_micros = held_micros - %s WHERE id = %s",
        [after, held, balance_id],
    )
    cap_charge = 0
    if day is not None and key_id is not None:
        cap_charge = min(cap_held, ceil_div(cap_held * charge, held)) if held else 0
        _spend_add(cursor, key_id=key_id, day=day, month=month, held_delta=cap_held, spent_delta=cap_charge)
    cursor.execute(
        "UPDATE billing_hold SET status = %s, charged_micros = %s, cap_charged_micros = %s, is_reconciled = %s, ended_at = %s"
        " WHERE id = %s",
        [status, charge, cap_charge, is_reconciliation, now, hold_id],
    )
    return Ended(request_id, status, charge)


def _late_settle(cursor, row, *, charge_micros: int, note: str) -> Ended | None:
    """The request's own settle after reconciliation ended its hold for the prompt's floor:
    charge what is still owed (at most the hold) as a second entry, keyed so it happens once."""
    hold_id, request_id, balance_id, key_id, model, held, cap_held, day, month, _status, _rec, charged, cap_charged = row
    idempotency_key = f"usage-late:{request_id}"
    cursor.execute("SELECT 1 FROM billing_ledgerentry WHERE idempotency_key = %s", [idempotency_key])
    if cursor.fetchone() is not None:
        return None
    owed = min(charge_micros, held) - charged
    if owed <= 0:
        return None
    cursor.execute("SELECT amount_micros, held_micros FROM billing_balance WHERE id = %s" + _for_update(), [balance_id])
    amount, balance_held = cursor.fetchone()
    diff = min(owed, amount - balance_held)  # the hold's reservation is gone: only what is free
    if diff < owed:
        log.warning("request %s settled after reconciliation owed %d but only %d could be charged", request_id, owed, max(diff, 0))
    if diff <= 0:
        return None
    after = amount - diff
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    cursor.execute(
        "INSERT INTO billing_ledgerentry (balance_id, kind, amount_micros, balance_after_micros,"
        " idempotency_key, request_id, note, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            balance_id,
            LedgerEntry.Kind.USAGE,
            -diff,
            after,
            idempotency_key,
            request_id,
            ("after reconciliation: " + (note or model))[:500],
            now,
        ],
    )
    cursor.execute("UPDATE billing_balance SET amount_micros = %s WHERE id = %s", [after, balance_id])
    cap_diff = 0
    if day is not None and key_id is not None and held:
        cap_diff = min(cap_held, ceil_div(cap_held * (charged + diff), held)) - cap_charged
        if cap_diff > 0:
            _spend_add(cursor, key_id=key_id, day=day, month=month, held_delta=0, spent_delta=cap_diff)
    cursor.execute(
        "UPDATE billing_hold SET charged_micros = charged_micros + %s, cap_charged_micros = cap_charged_micros + %s WHERE id = %s",
        [diff, max(cap_diff, 0), hold_id],
    )
    return Ended(request_id, Hold.Status.SETTLED, charged + diff)


def holds_reconcile(*, older_than_s: float) -> dict:
    """End holds whose request no longer renews their lease (its process died). The prompt was
    sent and billed to us, so each is settled for its floor (the prompt's cost); the completion
    that may have been delivered is unknown and is not charged here. Should the request still
    settle after all, it pays the rest then (hold_settle). Safe to run concurrently: each hold
    ends once."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    settled = 0
    stale = Hold.objects.filter(status=Hold.Status.OPEN).filter(
        Q(renewed_at__lt=cutoff) | Q(renewed_at__isnull=True, created_at__lt=cutoff)
    )
    for hold_key, floor in stale.values_list("hold_key", "floor_micros"):
        with transaction.atomic():
            ended = _end(
                hold_key,
                charge_micros=floor,
                status=Hold.Status.SETTLED,
                is_reconciliation=True,
                note="settled by reconciliation: the request's lease expired",
            )
        if ended:
            settled += 1
    return {"settled": settled}


__all__ = [
    "MICROS",
    "Refused",
    "balance_credit",
    "balances_open",
    "exchange_rate_set",
    "group_set",
    "hold_open",
    "hold_release",
    "hold_renew",
    "hold_settle",
    "holds_reconcile",
    "ledger_audit",
    "price_set",
    "price_values_check",
]


# --- redemption codes --------------------------------------------------------------------------

# No 0/O or 1/I, so a code read aloud or typed from paper survives; 24 symbols of 32 = 120 bits.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_SYMBOLS = 24
REDEMPTION_MAX_COUNT = 10_000


class RedemptionRefused(ValueError):
    """A code that does not credit: unknown, used or expired (one message for all three, so a
    guesser learns nothing)."""


def redemption_code_normalize(code: str) -> str:
    return "".join(ch for ch in str(code).upper() if ch.isalnum())


def redemption_code_hash(code: str) -> str:
    return hashlib.sha256(redemption_code_normalize(code).encode()).hexdigest()


def _code_new() -> str:
    symbols = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_SYMBOLS))
    return "-".join(symbols[i : i + 4] for i in range(0, CODE_SYMBOLS, 4))


@transaction.atomic
def redemption_batch_create(
    *, kind: str, amount_micros: int, count: int, expires_at: datetime | None = None, note: str = ""
) -> tuple[RedemptionBatch, list[str]]:
    """A batch of `count` codes worth `amount_micros` each on a tenant's `kind` balance. Returns
    the batch and the codes in clear: the only time they exist outside their holders' hands."""
    _kind(kind)
    if amount_micros <= 0:
        raise ValueError("amount must be positive")
    if not 1 <= count <= REDEMPTION_MAX_COUNT:
        raise ValueError(f"count must be between 1 and {REDEMPTION_MAX_COUNT}")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("expiry must be in the future")
    batch = RedemptionBatch.objects.create(
        balance_kind=kind,
        currency=DEFAULT_CURRENCY[kind],
        amount_micros=amount_micros,
        count=count,
        expires_at=expires_at,
        note=note[:300],
    )
    codes = [_code_new() for _ in range(count)]
    RedemptionCode.objects.bulk_create(RedemptionCode(batch=batch, code_hash=redemption_code_hash(c)) for c in codes)
    return batch, codes


@transaction.atomic
def redemption_redeem(*, tenant_id: int, code: str) -> LedgerEntry:
    """Credit a code's amount to the tenant, once: the conditional update lets one redemption
    through, and the ledger key `redeem:<hash>` refuses a second entry all the same."""
    code_hash = redemption_code_hash(code)
    refused = RedemptionRefused("this code is not valid, already used or expired")
    row = RedemptionCode.objects.select_related("batch").filter(code_hash=code_hash).first()
    if row is None or (row.batch.expires_at is not None and row.batch.expires_at <= timezone.now()):
        raise refused
    balance = next(b for b in balances_open(tenant_id=tenant_id) if b.kind == row.batch.balance_kind)
    if balance.currency != row.batch.currency:
        raise RedemptionRefused(
            f"this code is for a {row.batch.currency} balance; your {BALANCE_LABEL[balance.kind]} is in {balance.currency}"
        )
    claimed = RedemptionCode.objects.filter(pk=row.pk, redeemed_at__isnull=True).update(
        redeemed_at=timezone.now(), redeemed_by_tenant_id=tenant_id
    )
    if not claimed:
        raise refused
    return balance_credit(
        tenant_id=tenant_id,
        kind=row.batch.balance_kind,
        amount_micros=row.batch.amount_micros,
        idempotency_key=f"redeem:{code_hash}",
        entry_kind=LedgerEntry.Kind.REDEMPTION,
        note=f"redemption code (batch {row.batch_id})",
    )


__all__ += ["RedemptionRefused", "redemption_batch_create", "redemption_code_hash", "redemption_redeem"]
