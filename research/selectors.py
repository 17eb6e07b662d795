from __future__ import annotations

from .models import ResearchRun


def research_runs_of(*, tenant_id: int, limit: int = 100) -> list[ResearchRun]:
    return list(ResearchRun.objects.filter(tenant_id=tenant_id).order_by("-id")[:limit])


def research_run_get(*, tenant_id: int, run_id: int) -> ResearchRun:
    """Within the tenant only: another tenant's run is DoesNotExist (a 404), never a 403."""
    return ResearchRun.objects.select_related("tenant").get(tenant_id=tenant_id, pk=run_id)
