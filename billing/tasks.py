from celery import shared_task
from django.conf import settings


@shared_task(name="billing.reconcile_holds")
def reconcile_holds() -> dict:
    """End holds whose request's process died (see billing.services.holds_reconcile)."""
    from .services import holds_reconcile

    return holds_reconcile(older_than_s=settings.HOLD_RECONCILE_AFTER_S)


@shared_task(name="billing.alerts")
def alerts() -> dict:
    """Queue low-balance alerts for new crossings, then deliver every pending alert."""
    from .alerts import alerts_send, low_balances_check

    return {**low_balances_check(), **alerts_send()}
