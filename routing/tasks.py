"""routing's periodic job: expired idempotency records leave the database (relay.celery's schedule)."""

from __future__ import annotations

from celery import shared_task

from .idempotency import idempotency_records_prune


@shared_task(name="routing.idempotency_prune")
def idempotency_prune() -> dict:
    return {"deleted": idempotency_records_prune()}
