from __future__ import annotations

from .models import Balance


def balances_get(*, tenant_id: int) -> dict[str, Balance]:
    return {b.kind: b for b in Balance.objects.filter(tenant_id=tenant_id).order_by("kind")}
