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

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import ratecard
from .models import Balance, BalanceKind, ExchangeRate, Group, Hold, KeySpend, LedgerEntry, Price
from .money import MICROS, ceil_div, format_micros, parse_micros

log = logging.getLogger(__name__)

DEFAULT_CURRENCY = {BalanceKind.CREDIT: "USD", BalanceKind.WALLET: "CNY"}
BALANCE_LABEL = {BalanceKind.CREDIT: "Credit", BalanceKind.WALLET: "Wallet"}


class Refused(Exception):
    """A hold could not be made; the message says which balance or cap, what is left and what is needed."""

    def __init__(self, message: str, *, which: str) -> None:
        super().__init__(message)
        self.which = which  # "credit", "wallet", "daily_cap", "monthly_cap"


# --- balances and the ledger ---------------------------------------------------------------


@transaction.atomic
def balances_open(*, tenant_id: int) -> list[Balance]:
    return [
        Balance.objects.get_or_create(tenant_id=tenant_id, kind=kind, defaults={"currency": DEFAULT_CURRENCY[kind]})[0]
        for kind in (BalanceKind.CREDIT, BalanceKind.WALLET)
    ]


def _kind(kind: str) -> str:
    if kind not in BalanceKind.values:
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
    balance = Balance.objects.select_for_update().get(tenant_id=tenant_id, kind=_kind(kind))
    after = balance.amount_micros + amount_micros
    if after < balance.held_micros:
        raise ValueError(
            f"{BALANCE_LABEL[balance.kind]} has {format_micros(balance.amount_micros - balance.held_micros)} "
            f"{balance.currency} available; cannot take {format_micros(-amount_micros)}"
        )
    entry = LedgerEntry.objects.create(
        balance=balance, kind=entry_kind, amount_micros=amount_micros, balance_after_micros=after,
        idempotency_key=idempotency_key, note=note[:500],
    )
    Balance.objects.filter(pk=balance.pk).update(amount_micros=after)
    return entry


def ledger_audit() -> list[dict]:
    """Every balance whose amount differs from the sum of its entries, or whose entries'
    running balance_after does not add up."""
    from django.db.models import Sum

    mismatches = []
    sums = dict(LedgerEntry.objects.values_list("balance_id").annotate(total=Sum("amount_micros")))
    for balance in Balance.objects.all():
        total = sums.get(balance.pk) or 0
        if total != balance.amount_micros:
            mismatches.append(
                {"tenant_id": balance.tenant_id, "balance": balance.kind, "amount_micros": balance.amount_micros, "ledger_micros": total}
            )
        open_held = sum(Hold.objects.filter(balance=balance, status=Hold.Status.OPEN).values_list("amount_micros", flat=True))
        if open_held != balance.held_micros:
            mismatches.append(
                {"tenant_id": balance.tenant_id, "balance": balance.kind, "held_micros": balance.held_micros, "open_holds_micros": open_held}
            )
    running: dict[int, int] = {}
    for balance_id, amount, after, entry_id in LedgerEntry.objects.order_by("id").values_list(
        "balance_id", "amount_micros", "balance_after_micros", "id"
    ):
        running[balance_id] = running.get(balance_id, 0) + amount
        if running[balance_id] != after:
            mismatches.append({"entry_id": entry_id, "balance_after_micros": after, "running_micros": running[balance_id]})
            running[balance_id] = after  # report each break once
    return mismatches


# --- prices, groups, exchange rates --------------------------------------------------------


def price_set(
    *,
    model: str,
    input_usd_per_m: str | Decimal | None = None,
    output_usd_per_m: str | Decimal | None = None,
    cached_input_usd_per_m: str | Decimal | None = None,
    request_usd: str | Decimal | None = None,
    tiers: list[dict] | None = None,
    is_free: bool = False,
) -> Price:
    if not is_free and (input_usd_per_m is None or output_usd_per_m is None):
        raise ValueError("a price needs --input and --output (or --free)")
    values = {
        "input_micros_per_m": parse_micros(input_usd_per_m or 0, what="input price"),
        "output_micros_per_m": parse_micros(output_usd_per_m or 0, what="output price"),
        "cached_input_micros_per_m": (
            parse_micros(cached_input_usd_per_m, what="cached input price") if cached_input_usd_per_m is not None else None
        ),
        "request_micros": parse_micros(request_usd or 0, what="request price"),
        "is_free": is_free,
    }
    if tiers is not None:
        values["tiers"] = tiers
    for name, value in values.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"{name.replace('_micros_per_m', '').replace('_', ' ')} price must not be negative")
    price, _ = Price.objects.update_or_create(model=model, defaults=values)
    ratecard.invalidate()
    return price


def exchange_rate_set(*, currency: str, units_per_usd: str | Decimal) -> ExchangeRate:
    currency = currency.strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency {currency!r} must be a 3-letter code")
    try:
        rate = Decimal(str(units_per_usd))
    except Exception:
        raise ValueError(f"rate {units_per_usd!r} is not a number") from None
    if not rate.is_finite() or rate <= 0:
        raise ValueError("rate must be a positive number")
    obj, _ = ExchangeRate.objects.update_or_create(currency=currency, defaults={"units_per_usd": rate})
    ratecard.invalidate()
    return obj


def group_set(*, name: str, ratio: str | Decimal) -> Group:
    ratio = Decimal(str(ratio))
    if not ratio.is_finite() or ratio < 0:
        raise ValueError("group ratio must be a non-negative number")
    group, _ = Group.objects.update_or_create(name=name, defaults={"ratio": ratio})
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
    """The day and the month (its first day) of `now` in the tenant's time zone."""
    local = (now or timezone.now()).astimezone(ZoneInfo(tz or "UTC"))
    today = local.date()
    return today, today.replace(day=1)


@transaction.atomic
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
) -> Hold:
    balance = Balance.objects.get(tenant_id=tenant_id, kind=_kind(kind))
    moved = Balance.objects.filter(pk=balance.pk, amount_micros__gte=F("held_micros") + amount_micros).update(
        held_micros=F("held_micros") + amount_micros
    )
    if not moved:
        balance.refresh_from_db()
        available = balance.amount_micros - balance.held_micros
        raise Refused(
            f"Insufficient {BALANCE_LABEL[kind]} balance: {format_micros(max(0, available))} {balance.currency} available, "
            f"this request may cost up to {format_micros(amount_micros)} {balance.currency}. Top up or lower max_tokens.",
            which=kind,
        )
    day = month = None
    if caps.key_id is not None and (caps.daily_cap_micros is not None or caps.monthly_cap_micros is not None):
        day, month = cap_periods(caps.timezone, now)
        for period, starts_on, cap in (
            (KeySpend.Period.DAY, day, caps.daily_cap_micros),
            (KeySpend.Period.MONTH, month, caps.monthly_cap_micros),
        ):
            spend = _keyspend(caps.key_id, period, starts_on)
            if cap is None:
                KeySpend.objects.filter(pk=spend.pk).update(held_micros=F("held_micros") + cap_amount_micros)
                continue
            ok = KeySpend.objects.filter(
                pk=spend.pk, spent_micros__lte=cap - cap_amount_micros - F("held_micros")
            ).update(held_micros=F("held_micros") + cap_amount_micros)
            if not ok:
                spend.refresh_from_db()
                left = max(0, cap - spend.spent_micros - spend.held_micros)
                label = "daily" if period == KeySpend.Period.DAY else "monthly"
                # raising rolls back the balance hold made above: one transaction
                raise Refused(
                    f"This key's {label} spending cap is reached: {format_micros(left)} USD of "
                    f"{format_micros(cap)} USD left, this request may cost up to {format_micros(cap_amount_micros)} USD.",
                    which=f"{label}_cap",
                )
    return Hold.objects.create(
        hold_key=hold_key, request_id=request_id, balance=balance, key_id=caps.key_id, model=model,
        amount_micros=amount_micros, floor_micros=min(floor_micros, amount_micros),
        cap_amount_micros=cap_amount_micros, day=day, month=month,
    )


def _keyspend(key_id: int, period: str, starts_on: date) -> KeySpend:
    spend = KeySpend.objects.filter(key_id=key_id, period=period, starts_on=starts_on).first()
    if spend is not None:
        return spend
    try:
        with transaction.atomic():
            return KeySpend.objects.create(key_id=key_id, period=period, starts_on=starts_on)
    except IntegrityError:  # another request made it first
        return KeySpend.objects.get(key_id=key_id, period=period, starts_on=starts_on)


@transaction.atomic
def hold_settle(*, hold_key: str, charge_micros: int, note: str = "") -> Hold | None:
    """End a hold by charging `charge_micros` (at most what the balance has). Returns the hold,
    or None when it had already ended (exactly once)."""
    hold = Hold.objects.select_for_update().filter(hold_key=hold_key, status=Hold.Status.OPEN).first()
    if hold is None:
        return None
    return _end(hold, charge_micros=charge_micros, status=Hold.Status.SETTLED, note=note)


@transaction.atomic
def hold_release(*, hold_key: str) -> Hold | None:
    hold = Hold.objects.select_for_update().filter(hold_key=hold_key, status=Hold.Status.OPEN).first()
    if hold is None:
        return None
    return _end(hold, charge_micros=0, status=Hold.Status.RELEASED)


def _end(hold: Hold, *, charge_micros: int, status: str, note: str = "") -> Hold:
    balance = Balance.objects.select_for_update().get(pk=hold.balance_id)
    others_held = balance.held_micros - hold.amount_micros
    # Never below zero, nor below what other requests hold: the excess over the hold (a
    # prompt longer than estimated) is charged only as far as the balance goes.
    charge = max(0, min(charge_micros, balance.amount_micros - others_held))
    if charge < charge_micros:
        log.warning("request %s cost %d but only %d could be charged", hold.request_id, charge_micros, charge)
    after = balance.amount_micros - charge
    if charge:
        LedgerEntry.objects.create(
            balance=balance, kind=LedgerEntry.Kind.USAGE, amount_micros=-charge, balance_after_micros=after,
            idempotency_key=f"usage:{hold.request_id}", request_id=hold.request_id,
            note=(note or f"{hold.model}")[:500],
        )
    Balance.objects.filter(pk=balance.pk).update(amount_micros=after, held_micros=F("held_micros") - hold.amount_micros)
    if hold.day is not None and hold.key_id is not None:
        cap_charge = ceil_div(hold.cap_amount_micros * charge, hold.amount_micros) if hold.amount_micros else 0
        for period, starts_on in ((KeySpend.Period.DAY, hold.day), (KeySpend.Period.MONTH, hold.month)):
            KeySpend.objects.filter(key_id=hold.key_id, period=period, starts_on=starts_on).update(
                held_micros=F("held_micros") - hold.cap_amount_micros, spent_micros=F("spent_micros") + cap_charge
            )
    Hold.objects.filter(pk=hold.pk).update(status=status, charged_micros=charge, ended_at=timezone.now())
    hold.status, hold.charged_micros = status, charge
    return hold


def holds_reconcile(*, older_than_s: float) -> dict:
    """End holds whose request never ended them (its process died). The prompt was sent and
    billed to us, so each is settled for its floor (the prompt's cost); the completion that may
    have been delivered is unknown and is not charged. Safe to run concurrently: each hold ends once."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    settled = 0
    for hold_key, floor in Hold.objects.filter(status=Hold.Status.OPEN, created_at__lt=cutoff).values_list(
        "hold_key", "floor_micros"
    ):
        if hold_settle(hold_key=hold_key, charge_micros=floor, note="settled by reconciliation: the request's process ended"):
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
    "hold_settle",
    "holds_reconcile",
    "ledger_audit",
    "price_set",
]
