from django.conf import settings
from django.db import models
from django.db.models import Q


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    name = models.CharField(max_length=100, unique=True)
    group = models.CharField(max_length=50, default="default")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    timezone = models.CharField(max_length=64, default="UTC")  # caps roll over at its midnight
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="tenant_name_nonempty"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_once")]


class ApiKey(models.Model):
    """A customer's key. Only its SHA-256 is kept; `prefix` is for display."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True)
    # A rotated key's old secret keeps working until previous_expires_at (the overlap window).
    previous_key_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    prefix = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True)  # empty: every model
    allowed_ips = models.JSONField(default=list, blank=True)  # CIDRs; empty: anywhere
    rpm = models.PositiveIntegerField(null=True, blank=True)
    tpm = models.PositiveIntegerField(null=True, blank=True)
    daily_cap_micros = models.BigIntegerField(null=True, blank=True)  # in the tenant's Credit currency
    monthly_cap_micros = models.BigIntegerField(null=True, blank=True)
    mode = models.CharField(max_length=32, blank=True, default="")  # routing mode override
    allows_directives = models.BooleanField(default=True)  # X-TokenHub-* headers and @tokenhub lines
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # who made it, when a portal member did: a member manages only the keys they made
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys_created"
    )

    class Meta:
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(daily_cap_micros__isnull=True) | Q(daily_cap_micros__gte=0), name="apikey_daily_cap_nonneg"
            ),
            models.CheckConstraint(
                condition=Q(monthly_cap_micros__isnull=True) | Q(monthly_cap_micros__gte=0),
                name="apikey_monthly_cap_nonneg",
            ),
            models.CheckConstraint(
                condition=Q(previous_key_hash__isnull=True, previous_expires_at__isnull=True)
                | Q(previous_key_hash__isnull=False, previous_expires_at__isnull=False),
                name="apikey_previous_has_window",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class OperatorToken(models.Model):
    """A bearer token for the management API. Only its SHA-256 is kept; `prefix` is for display.
    A read-only token may call every GET and nothing else."""

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    is_read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="operatortoken_name_nonempty")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"
class Invitation(models.Model):
    """A teammate invited by email. Only the SHA-256 of the link's token is kept."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(role="owner"), name="invitation_not_owner"),
        ]
