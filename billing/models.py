"""Money. Every amount is an integer number of micro-units of its currency (`_micros`).

Rules the database keeps (not only this code):
- a balance never goes below zero, nor does what it holds for requests in flight;
- the ledger is append-only (PostgreSQL: a trigger refuses UPDATE and DELETE; see the
  migration) and each entry's idempotency key is unique, so an event is applied once;
- a balance's `amount_micros` equals the sum of its ledger entries (`audit_ledger` checks).
"""

from django.db import models
from django.db.models import F, Q


class BalanceKind(models.TextChoices):
    CREDIT = "credit"  # billed by channels of class `official`
    WALLET = "wallet"  # billed by channels of class `routed`


class Group(models.Model):
    """A price group. A tenant's group multiplies every list price by `ratio`."""

    name = models.CharField(max_length=50, unique=True)
    ratio = models.DecimalField(max_digits=10, decimal_places=4, default=1)
    mode = models.CharField(max_length=32, blank=True, default="")  # default routing mode

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(ratio__gte=0), name="group_ratio_nonneg")]

    def __str__(self) -> str:
        return self.name


class Price(models.Model):
    """List price of a model in micro-USD per 1M tokens (2.5 USD/M is 2_500_000)."""

    model = models.CharField(max_length=200, unique=True)  # public model id
    input_micros_per_m = models.BigIntegerField(default=0)
    output_micros_per_m = models.BigIntegerField(default=0)
    cached_input_micros_per_m = models.BigIntegerField(null=True, blank=True)  # None: input price
    cache_write_micros_per_m = models.BigIntegerField(null=True, blank=True)  # None: input price (Anthropic: 1.25x)
    request_micros = models.BigIntegerField(default=0)  # per request, for models priced that way
    # Prices above a prompt length, as Gemini and Claude charge: a list of
    # {"above_prompt_tokens": N, "input_micros_per_m": .., "output_micros_per_m": .., "cached_input_micros_per_m": ..}
    tiers = models.JSONField(default=list, blank=True)
    is_free = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(input_micros_per_m__gte=0, output_micros_per_m__gte=0, request_micros__gte=0),
                name="price_nonneg",
            ),
            models.CheckConstraint(
                condition=(Q(cached_input_micros_per_m__isnull=True) | Q(cached_input_micros_per_m__gte=0))
                & (Q(cache_write_micros_per_m__isnull=True) | Q(cache_write_micros_per_m__gte=0)),
                name="price_cache_nonneg",
            ),
        ]

    def __str__(self) -> str:
        return self.model


class ExchangeRate(models.Model):
    """Units of `currency` per 1 USD, set by the operator."""

    currency = models.CharField(max_length=3, unique=True)
    units_per_usd = models.DecimalField(max_digits=18, decimal_places=6)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(units_per_usd__gt=0), name="rate_positive")]


class Balance(models.Model):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="balances")
    kind = models.CharField(max_length=8, choices=BalanceKind.choices)
    currency = models.CharField(max_length=3)
    amount_micros = models.BigIntegerField(default=0)  # = sum of its ledger entries
    held_micros = models.BigIntegerField(default=0)  # reserved for requests in flight

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind"], name="balance_one_per_kind"),
            models.CheckConstraint(condition=Q(amount_micros__gte=0), name="balance_nonneg"),
            models.CheckConstraint(condition=Q(held_micros__gte=0), name="balance_held_nonneg"),
            models.CheckConstraint(condition=Q(held_micros__lte=F("amount_micros")), name="balance_held_covered"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.kind}"


class LedgerEntry(models.Model):
    """Append-only. A correction is a new entry, never an edit."""

    class Kind(models.TextChoices):
        TOPUP = "topup"
        USAGE = "usage"
        REFUND = "refund"
        ADJUSTMENT = "adjustment"
        REDEMPTION = "redemption"

    balance = models.ForeignKey(Balance, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_micros = models.BigIntegerField()  # + credit, - debit
    balance_after_micros = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=200, unique=True)
    request_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount_micros=0), name="ledger_nonzero"),
            models.CheckConstraint(condition=Q(balance_after_micros__gte=0), name="ledger_after_nonneg"),
        ]
        indexes = [models.Index(fields=["balance", "-id"], name="ledger_by_balance")]


class Hold(models.Model):
    """Money reserved for one request in flight. Ends exactly once: settled or released,
    by the request itself or, if its process died, by the reconciliation job."""

    class Status(models.TextChoices):
        OPEN = "open"
        SETTLED = "settled"
        RELEASED = "released"

    hold_key = models.CharField(max_length=80, unique=True)  # request id (+ ":n" after a switch of balance)
    request_id = models.CharField(max_length=64, db_index=True)
    balance = models.ForeignKey(Balance, on_delete=models.PROTECT, related_name="holds")
    key_id = models.BigIntegerField(null=True)
    model = models.CharField(max_length=200)
    amount_micros = models.BigIntegerField()
    # what the reconciliation job charges if the request's process died: the prompt was sent
    # (and billed to us); what was delivered after it is unknown
    floor_micros = models.BigIntegerField(default=0)
    # the key's cap periods this hold counts against (amounts in Credit-currency micros)
    cap_amount_micros = models.BigIntegerField(default=0)
    cap_charged_micros = models.BigIntegerField(default=0)  # what its settle added to the key's spend
    day = models.DateField(null=True)
    month = models.DateField(null=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    charged_micros = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # the lease: the live request renews it while it streams; reconciliation ends only holds
    # whose lease is older than HOLD_RECONCILE_AFTER_S (docs/decisions/003-hold-leases.md)
    renewed_at = models.DateTimeField(null=True)
    is_reconciled = models.BooleanField(default=False)  # settled by reconciliation, not by its request
    ended_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gte=0), name="hold_nonneg"),
            models.CheckConstraint(condition=Q(charged_micros__gte=0), name="hold_charged_nonneg"),
            models.CheckConstraint(
                condition=Q(cap_charged_micros__gte=0, cap_charged_micros__lte=F("cap_amount_micros")), name="hold_cap_charge_within_hold"
            ),
        ]
        indexes = [
            # reconciliation: "open holds older than T"
            models.Index(fields=["created_at"], name="hold_open_by_age", condition=Q(status="open")),
            # reconciliation: "open holds whose lease is older than T"
            models.Index(fields=["renewed_at"], name="hold_open_by_lease", condition=Q(status="open")),
        ]


class KeySpend(models.Model):
    """What a key has spent and holds in one day or month of its tenant's time zone."""

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    key_id = models.BigIntegerField()
    period = models.CharField(max_length=8, choices=Period.choices)
    starts_on = models.DateField()
    spent_micros = models.BigIntegerField(default=0)
    held_micros = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key_id", "period", "starts_on"], name="keyspend_once"),
            models.CheckConstraint(condition=Q(spent_micros__gte=0, held_micros__gte=0), name="keyspend_nonneg"),
        ]


class PriceChange(models.Model):
    """One price the pricing sync proposed, applied or refused to apply, with the price it
    replaces: the history of every synced change. Rows are never edited except to decide a
    proposal (status and `decided_at`)."""

    class Status(models.TextChoices):
        PROPOSED = "proposed"  # waiting for an operator (sync_prices --accept-proposed)
        APPLIED = "applied"
        REFUSED = "refused"  # e.g. the source gave 0 for a price we charge: never zeroed silently
        SUPERSEDED = "superseded"  # a newer proposal for the same model replaced it

    model = models.CharField(max_length=200, db_index=True)  # public model id
    source = models.CharField(max_length=500)  # URL or file the prices came from
    source_key = models.CharField(max_length=200, blank=True, default="")  # the entry used in that document
    markup = models.DecimalField(max_digits=8, decimal_places=4, default=1)
    old_input_micros_per_m = models.BigIntegerField(null=True, blank=True)  # None: no price before
    old_output_micros_per_m = models.BigIntegerField(null=True, blank=True)
    old_cached_input_micros_per_m = models.BigIntegerField(null=True, blank=True)
    new_input_micros_per_m = models.BigIntegerField()
    new_output_micros_per_m = models.BigIntegerField()
    new_cached_input_micros_per_m = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    note = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(new_input_micros_per_m__gte=0, new_output_micros_per_m__gte=0), name="pricechange_nonneg"
            ),
            models.CheckConstraint(condition=Q(markup__gt=0), name="pricechange_markup_positive"),
            models.CheckConstraint(condition=Q(status__in=["proposed", "applied", "refused", "superseded"]), name="pricechange_status_known"),
            # never silently zero: an applied change always carries a real price
            models.CheckConstraint(
                condition=~Q(status="applied") | Q(new_input_micros_per_m__gt=0) | Q(new_output_micros_per_m__gt=0),
                name="pricechange_applied_nonzero",
            ),
        ]
