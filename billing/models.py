"""Money. Every amount is an integer number of micro-units of its currency (`_micros`).

Rules the database keeps (not only this code):
- a balance never goes below zero, nor does what it holds for requests in flight;
- the ledger is append-only (PostgreSQL: a trigger refuses UPDATE and DELETE; see the
  migration) and each entry's idempotency key is unique, so an event is applied once;
- a balance's `amount_micros` equals the sum of its ledger entries (`audit_ledger` checks).
"""

from django.db import models
from django.db.models import F, Q

from .money import format_micros


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
    image_micros = models.BigIntegerField(default=0)  # per image made (/v1/images/generations)
    second_micros = models.BigIntegerField(default=0)  # per second of audio transcribed (/v1/audio/transcriptions)
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
            models.CheckConstraint(condition=Q(image_micros__gte=0, second_micros__gte=0), name="price_media_nonneg"),
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
        verbose_name_plural = "ledger entries"
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
    # whose lease is older than HOLD_RECONCILE_AFTER_S (docs/decisions/005-hold-leases.md)
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
        verbose_name_plural = "key spend"
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


class Payment(models.Model):
    """One top-up through Stripe Checkout, from the session's creation to what Stripe says
    later. Money moves only through ledger entries (keys `stripe:paid:<session>`, and the
    event id for refunds and disputes); these fields say what happened, for the customer's
    receipt and the operator.

    Refund and dispute policy (docs/payments.md): what Stripe takes back is debited as far as
    the balance's available money goes; the rest is `outstanding_micros`, never a negative
    balance, shown to the operator in the admin."""

    class Status(models.TextChoices):
        PENDING = "pending"  # session created, not paid (yet)
        PAID = "paid"  # credited
        FAILED = "failed"  # an async wallet payment failed
        REFUNDED = "refunded"  # all of it returned to the customer
        DISPUTED = "disputed"  # a chargeback is open or was lost

    class Method(models.TextChoices):
        CARD = "card"
        ALIPAY = "alipay"
        WECHAT_PAY = "wechat_pay"

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="payments")
    balance_kind = models.CharField(max_length=8, choices=BalanceKind.choices)
    currency = models.CharField(max_length=3)
    amount_micros = models.BigIntegerField()
    method = models.CharField(max_length=16, choices=Method.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    session_id = models.CharField(max_length=255, unique=True)
    # ours, sent as client_reference_id and the payment intent's metadata `tokenhub_ref`: finds
    # the payment from a charge event that arrives before the session's own event
    reference = models.CharField(max_length=100, unique=True)
    checkout_url = models.URLField(max_length=2000, blank=True, default="")
    payment_intent_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    receipt_url = models.URLField(max_length=2000, blank=True, default="")
    refunded_micros = models.BigIntegerField(default=0)  # what Stripe returned to the customer (refunds)
    disputed_micros = models.BigIntegerField(default=0)  # what an open or lost dispute took
    debited_micros = models.BigIntegerField(default=0)  # what we took back from the balance for both
    outstanding_micros = models.BigIntegerField(default=0)  # taken back by Stripe but already spent
    created_by_user_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_micros__gte=0, disputed_micros__gte=0, debited_micros__gte=0, outstanding_micros__gte=0),
                name="payment_amounts_nonneg",
            ),
            models.CheckConstraint(condition=Q(status__in=["pending", "paid", "failed", "refunded", "disputed"]), name="payment_status_known"),
            models.CheckConstraint(condition=Q(method__in=["card", "alipay", "wechat_pay"]), name="payment_method_known"),
        ]
        indexes = [models.Index(fields=["tenant", "-id"], name="payment_by_tenant")]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.status})"


class StripeEvent(models.Model):
    """Every verified event Stripe delivered, once (its id is unique), with what handling it did."""

    class Status(models.TextChoices):
        PROCESSED = "processed"
        IGNORED = "ignored"  # a type we do not act on, or nothing to do (e.g. an unknown session)
        FAILED = "failed"  # the handler raised: Stripe retries, and the next delivery tries again

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True, default="")
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    payload = models.JSONField()
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["processed", "ignored", "failed"]), name="stripeevent_status_known"),
        ]


class RedemptionBatch(models.Model):
    """Codes made together by an operator: same amount, balance and expiry."""

    balance_kind = models.CharField(max_length=8, choices=BalanceKind.choices)
    currency = models.CharField(max_length=3)
    amount_micros = models.BigIntegerField()  # in `currency`
    count = models.PositiveIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "redemption batches"
        constraints = [
            models.CheckConstraint(condition=Q(amount_micros__gt=0), name="redemptionbatch_amount_positive"),
            models.CheckConstraint(condition=Q(count__gt=0), name="redemptionbatch_count_positive"),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk}: {self.count} x {format_micros(self.amount_micros or 0)} {self.currency}"


class RedemptionCode(models.Model):
    """One code: only its SHA-256 is kept. Redeemed once: the conditional update of
    `redeemed_at` and the ledger key `redeem:<hash>` each allow it only once."""

    batch = models.ForeignKey(RedemptionBatch, on_delete=models.PROTECT, related_name="codes")
    code_hash = models.CharField(max_length=64, unique=True)
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_by_tenant = models.ForeignKey("accounts.Tenant", null=True, blank=True, on_delete=models.PROTECT)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(redeemed_at__isnull=True, redeemed_by_tenant__isnull=True)
                | Q(redeemed_at__isnull=False, redeemed_by_tenant__isnull=False),
                name="redemptioncode_redeemed_by_someone",
            ),
        ]


class AlertSettings(models.Model):
    """A tenant's low-balance alerts: thresholds its owners set, and an optional signed webhook.
    `*_is_low` remembers the last crossing, so one crossing sends one alert."""

    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="alert_settings")
    credit_below_micros = models.BigIntegerField(null=True, blank=True)  # None: no alert
    wallet_below_micros = models.BigIntegerField(null=True, blank=True)
    credit_is_low = models.BooleanField(default=False)
    wallet_is_low = models.BooleanField(default=False)
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    webhook_secret = models.CharField(max_length=100, blank=True, default="")  # HMAC-SHA256 key of the signature

    class Meta:
        verbose_name_plural = "alert settings"
        constraints = [
            models.CheckConstraint(
                condition=(Q(credit_below_micros__isnull=True) | Q(credit_below_micros__gt=0))
                & (Q(wallet_below_micros__isnull=True) | Q(wallet_below_micros__gt=0)),
                name="alertsettings_thresholds_positive",
            ),
        ]


class Alert(models.Model):
    """One alert to send (an outbox): the periodic job delivers pending ones by email and webhook."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # kept trying until `attempts` reached the limit

    class Kind(models.TextChoices):
        LOW_BALANCE = "low_balance"
        CHANNEL_DISABLED = "channel_disabled"
        CHANNEL_BALANCE_LOW = "channel_balance_low"

    tenant = models.ForeignKey("accounts.Tenant", null=True, blank=True, on_delete=models.CASCADE)  # None: for operators
    kind = models.CharField(max_length=32, choices=Kind.choices)
    subject = models.CharField(max_length=300)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # delivery: "pending alerts, oldest first"
            models.Index(fields=["id"], name="alert_pending", condition=Q(status="pending")),
        ]
