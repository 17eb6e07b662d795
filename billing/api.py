"""Management API: balances and the ledger (read; adjustments are ledger entries), prices and
groups (mounted under /api/v1/ by relay.api)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError

from accounts import roles
from accounts.apiauth import MAX_ID, operator_required, tenant_for, with_errors

from .models import BalanceKind, Group, LedgerEntry, Price
from .money import MAX_MICROS
from .selectors import balances_get
from .services import balance_credit, group_set, price_set, redemption_batch_create

router = Router(tags=["billing"])

ADJUSTMENT_KEY_PREFIX = "api:"  # an operator's key can never collide with a request id or a Stripe event


class BalanceOut(Schema):
    currency: str
    amount_micros: int
    held_micros: int


class BalancesOut(Schema):
    credit: BalanceOut
    wallet: BalanceOut


class EntryOut(Schema):
    id: int
    balance: str
    currency: str
    kind: str
    amount_micros: int
    balance_after_micros: int
    request_id: str
    note: str
    created_at: datetime

    @staticmethod
    def resolve_balance(obj):
        return obj.balance.kind

    @staticmethod
    def resolve_currency(obj):
        return obj.balance.currency


class EntryPage(Schema):
    items: list[EntryOut]
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null at the end")


class AdjustmentIn(Schema):
    balance: BalanceKind
    amount_micros: int = Field(ge=-MAX_MICROS, le=MAX_MICROS, description="positive adds, negative takes; never zero")
    idempotency_key: str = Field(min_length=1, max_length=150, description="the same key again applies nothing twice")
    note: str = Field("", max_length=500)


@router.get("/tenants/{tenant_id}/balances", response=with_errors({200: BalancesOut}), summary="Both balances, with what is held")
def balances_show(request, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.BILLING_READ)
    found = balances_get(tenant_id=tenant.pk)
    return {kind: found[kind] for kind in (BalanceKind.CREDIT, BalanceKind.WALLET)}


@router.get("/tenants/{tenant_id}/ledger", response=with_errors({200: EntryPage}), summary="Ledger entries, newest first")
def ledger_list(
    request,
    tenant_id: int = Path(..., ge=1, le=MAX_ID),
    balance: BalanceKind | None = None,
    before_id: int | None = Query(None, ge=1, le=MAX_ID),
    limit: int = Query(50, ge=1, le=200),
):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.BILLING_READ)
    entries = LedgerEntry.objects.select_related("balance").filter(balance__tenant_id=tenant.pk).order_by("-id")
    if balance is not None:
        entries = entries.filter(balance__kind=balance)
    if before_id is not None:
        entries = entries.filter(pk__lt=before_id)
    items = list(entries[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_before_id": items[-1].pk if more else None}


@router.post("/tenants/{tenant_id}/ledger", response=with_errors({201: EntryOut, 200: EntryOut}), summary="Adjust a balance (one ledger entry)")
def ledger_adjust(request, body: AdjustmentIn, tenant_id: int = Path(..., ge=1, le=MAX_ID)):
    tenant = tenant_for(request, tenant_id=tenant_id, permission=roles.BILLING_READ)  # first: another tenant's id is a 404
    operator_required(request)
    if body.amount_micros == 0:
        raise HttpError(400, "amount_micros must not be zero")
    idempotency_key = ADJUSTMENT_KEY_PREFIX + body.idempotency_key
    earlier = LedgerEntry.objects.select_related("balance").filter(idempotency_key=idempotency_key).first()
    if earlier is not None:
        if (earlier.balance.tenant_id, earlier.balance.kind, earlier.amount_micros) != (tenant.pk, body.balance, body.amount_micros):
            raise HttpError(409, "this idempotency key was used for a different adjustment")
        return Status(200, earlier)
    note = body.note or f"adjustment by operator token {request.auth.operator.name}"
    entry = balance_credit(tenant_id=tenant.pk, kind=body.balance, idempotency_key=idempotency_key,
                           amount_micros=body.amount_micros, entry_kind=LedgerEntry.Kind.ADJUSTMENT, note=note)
    return Status(201, LedgerEntry.objects.select_related("balance").get(pk=entry.pk))


# --- prices and groups ---------------------------------------------------------------------------


class PriceOut(Schema):
    model: str
    input_micros_per_m: int
    output_micros_per_m: int
    cached_input_micros_per_m: int | None
    is_free: bool
    updated_at: datetime


USD = Field(None, ge=0, le=10**6, max_digits=18, decimal_places=6, description="USD per 1M tokens")


class PriceIn(Schema):
    model: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    input_usd_per_m: Decimal | None = USD
    output_usd_per_m: Decimal | None = USD
    cached_input_usd_per_m: Decimal | None = USD
    is_free: bool = False


class GroupOut(Schema):
    name: str
    ratio: Decimal
    mode: str


class GroupIn(Schema):
    ratio: Decimal = Field(ge=0, le=10**4, max_digits=10, decimal_places=4)
    mode: str | None = Field(None, max_length=32)


@router.get("/prices", response=with_errors({200: list[PriceOut]}), summary="List prices")
def prices_list(request):
    return list(Price.objects.order_by("model"))


@router.post("/prices", response=with_errors({200: PriceOut}), summary="Set a model's price (non-negative)")
def prices_set(request, body: PriceIn):
    operator_required(request)
    return price_set(model=body.model, input_usd_per_m=body.input_usd_per_m, output_usd_per_m=body.output_usd_per_m,
                     cached_input_usd_per_m=body.cached_input_usd_per_m, is_free=body.is_free)


@router.get("/groups", response=with_errors({200: list[GroupOut]}), summary="List price groups")
def groups_list(request):
    return list(Group.objects.order_by("name"))


@router.put("/groups/{name}", response=with_errors({200: GroupOut}), summary="Set a group's price ratio (and routing mode)")
def groups_set(request, body: GroupIn, name: str = Path(..., min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+$")):
    operator_required(request)
    return group_set(name=name, ratio=body.ratio, mode=body.mode)


# --- redemption codes ----------------------------------------------------------------------------


class RedemptionBatchIn(Schema):
    balance: BalanceKind
    amount_micros: int = Field(ge=1, le=MAX_MICROS, description="what each code credits, in the balance's micro-units")
    count: int = Field(ge=1, le=10_000)
    expires_at: datetime | None = None
    note: str = Field("", max_length=200)


class RedemptionBatchOut(Schema):
    id: int
    balance: str
    amount_micros: int
    count: int
    expires_at: datetime | None
    codes: list[str] = Field(description="the codes in clear: in this answer only (stored hashed)")


@router.post("/redemption-batches", response=with_errors({201: RedemptionBatchOut}), summary="Generate a batch of redemption codes (shown once)")
def redemption_batches_create(request, body: RedemptionBatchIn):
    operator_required(request)
    batch, codes = redemption_batch_create(
        kind=body.balance, amount_micros=body.amount_micros, count=body.count, expires_at=body.expires_at, note=body.note
    )
    return Status(201, {"id": batch.pk, "balance": body.balance, "amount_micros": body.amount_micros, "count": body.count,
                        "expires_at": body.expires_at, "codes": codes})
