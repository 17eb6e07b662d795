"""The research workspace's pages. Runs are looked up within the visitor's current tenant, so
another tenant's run id is a 404."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.portal import portal_view

from .documents import SourceUnreadable, report_pdf_render, source_text_extract
from .forms import ResearchForm
from .models import ResearchRun
from .selectors import research_run_get, research_runs_of
from .services import (
    ResearchError,
    research_run_create,
    research_run_delete,
    research_run_duplicate,
)
from .tasks import research_run_dispatch


def _run_of(request, run_id: int) -> ResearchRun:
    try:
        return research_run_get(tenant_id=request.tenant.pk, run_id=run_id)
    except ResearchRun.DoesNotExist:
        raise Http404("no such research run") from None


def _sources(request, form: ResearchForm) -> list[dict]:
    sources = []
    pasted = form.cleaned_data.get("sources_text") or ""
    for index, block in enumerate((b.strip() for b in pasted.replace("\r\n", "\n").split("\n---\n")), start=1):
        if block:
            first_line = block.splitlines()[0][:120]
            sources.append({"title": first_line or f"Pasted source {index}", "url": "", "text": block})
    for upload in request.FILES.getlist("source_files"):
        if upload.size > settings.RESEARCH_MAX_UPLOAD_BYTES:
            raise SourceUnreadable(f"{upload.name}: larger than {settings.RESEARCH_MAX_UPLOAD_BYTES:,} bytes")
        sources.append({"title": upload.name[:200], "url": "", "text": source_text_extract(name=upload.name, data=upload.read())})
    return sources


@portal_view(permission="research")
def runs(request):
    form = ResearchForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                run = research_run_create(
                    tenant=request.tenant, created_by=request.user, question=form.cleaned_data["question"],
                    depth=form.cleaned_data["depth"], model_ids=form.cleaned_data["models"], mode=form.cleaned_data["mode"],
                    sources=_sources(request, form), use_web_search=form.cleaned_data["use_web_search"],
                    max_cost_micros=form.cleaned_data["max_cost"],
                )
            except (ResearchError, SourceUnreadable) as exc:
                form.add_error(None, forms.ValidationError(str(exc)))
            else:
                research_run_dispatch(run=run)
                return redirect("research-run", run_id=run.pk)
        status = 400
    context = {"form": form, "runs": research_runs_of(tenant_id=request.tenant.pk), "search_enabled": bool(settings.RESEARCH_SEARCH_URL)}
    return render(request, "research/runs.html", context, status=status)


@portal_view(permission="research")
def run_detail(request, run_id: int):
    return render(request, "research/run.html", {"run": _run_of(request, run_id)})


@portal_view(permission="research")
def run_status(request, run_id: int):
    """The live part of a run's page; htmx polls it while the run is active."""
    return render(request, "research/_status.html", {"run": _run_of(request, run_id)})


@require_POST
@portal_view(permission="research")
def run_duplicate(request, run_id: int):
    try:
        run = research_run_duplicate(run=_run_of(request, run_id), created_by=request.user)
    except ResearchError as exc:
        messages.error(request, str(exc))
        return redirect("research-run", run_id=run_id)
    research_run_dispatch(run=run)
    return redirect("research-run", run_id=run.pk)


@require_POST
@portal_view(permission="research")
def run_delete(request, run_id: int):
    research_run_delete(run=_run_of(request, run_id))
    messages.success(request, "Research run deleted; its charges stay in the ledger.")
    return redirect("research-runs")


@portal_view(permission="research")
def run_pdf(request, run_id: int):
    run = _run_of(request, run_id)
    if run.is_active or not run.report:
        raise Http404("the report is not ready")
    response = HttpResponse(report_pdf_render(run=run), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="research-{run.pk}.pdf"'
    return response
