"""Research runs: create, dispatch, carry out, duplicate, delete, reap.

How a run talks to models: through the relay's own `/v1/chat/completions` over HTTP
(`RESEARCH_RELAY_URL`), as the tenant, with an API key made for this run alone by
`accounts.services.api_key_create`. So every call (and every orchestration sub-call) goes the
whole journey: admission, routing and failover, its own hold and charge in the ledger, its
request log. The key's daily and monthly spending caps are the run's ceiling, so the relay
itself refuses (402) the call that would pass it; a 402 for the balance or the ceiling stops the
run cleanly with the sections written so far. The run's cost is what its key was charged
(`billing.selectors.key_spent_micros`); the key is revoked when the run ends.

A run's steps: plan `depth` sub-questions (models[0]); gather sources (pasted, uploaded, and the
operator's search API when enabled); draft each section from the sources numbered [n] (with
`mode`: a single model, or an orchestration model such as `tokenhub/refine`); summarise
(models[0]). Each step writes a heartbeat; `research_runs_reap` marks failed the runs whose
worker stopped (no heartbeat for `RESEARCH_STALE_AFTER_S`), their charges left as they are.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import httpx
from django.conf import settings
from django.utils import timezone

from accounts.selectors import api_key_get
from accounts.services import api_key_create, api_key_revoke
from billing.selectors import key_spent_micros

from .models import MAX_DEPTH, ResearchRun

log = logging.getLogger(__name__)

MODES = ("single", "tokenhub/vote", "tokenhub/refine", "tokenhub/adversarial")
SOURCE_CHARS = 4_000  # of each source, given to a section's prompt
MAX_SOURCES = 20


class ResearchError(Exception):
    """Bad input for a run; the message is shown to the customer."""


class RunStopped(Exception):
    """The run cannot go on: its reason is saved on the run."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def research_run_create(
    *,
    tenant,
    created_by=None,
    question: str,
    depth: int,
    model_ids: list[str],
    mode: str = "single",
    sources: list[dict] | None = None,
    use_web_search: bool = False,
    max_cost_micros: int,
) -> ResearchRun:
    question = (question or "").strip()
    if not question:
        raise ResearchError("Ask a question.")
    if len(question) > 4_000:
        raise ResearchError("The question is too long (4,000 characters at most).")
    if not 1 <= depth <= MAX_DEPTH:
        raise ResearchError(f"Depth must be between 1 and {MAX_DEPTH} sub-questions.")
    model_ids = [m.strip() for m in model_ids if m and m.strip()]
    if not model_ids or len(model_ids) > 8:
        raise ResearchError("Name between one and eight models.")
    if mode not in MODES:
        raise ResearchError(f"Unknown mode {mode!r}: one of {', '.join(MODES)}.")
    if max_cost_micros <= 0 or max_cost_micros > settings.RESEARCH_MAX_COST_MICROS:
        raise ResearchError(f"The cost ceiling must be above 0 and at most {settings.RESEARCH_MAX_COST_MICROS / 1e6:g} USD.")
    if use_web_search and not settings.RESEARCH_SEARCH_URL:
        raise ResearchError("Web search is not configured on this TokenHub.")
    sources = [
        {"title": str(s.get("title") or f"Source {i}")[:200], "url": str(s.get("url") or "")[:500], "text": str(s.get("text") or "")}
        for i, s in enumerate(sources or [], start=1)
        if str(s.get("text") or "").strip()
    ]
    if len(sources) > MAX_SOURCES:
        raise ResearchError(f"At most {MAX_SOURCES} sources.")
    return ResearchRun.objects.create(
        tenant=tenant,
        created_by=created_by,
        question=question,
        depth=depth,
        model_ids=model_ids,
        mode=mode,
        sources=sources,
        use_web_search=use_web_search,
        max_cost_micros=max_cost_micros,
        heartbeat_at=timezone.now(),
    )


def research_run_duplicate(*, run: ResearchRun, created_by=None) -> ResearchRun:
    """A new run with the same inputs (its own cost, key and report)."""
    return research_run_create(
        tenant=run.tenant,
        created_by=created_by,
        question=run.question,
        depth=run.depth,
        model_ids=list(run.model_ids),
        mode=run.mode,
        sources=list(run.sources),
        use_web_search=run.use_web_search and bool(settings.RESEARCH_SEARCH_URL),
        max_cost_micros=run.max_cost_micros,
    )


def research_run_delete(*, run: ResearchRun) -> None:
    """Forget the run. Its charges stay in the ledger; a worker still on it stops at its next step."""
    if run.key_id is not None:
        _key_revoke(run.key_id)
    run.delete()


def research_runs_reap(*, older_than_s: float) -> int:
    """Mark failed every unfinished run without a heartbeat for `older_than_s`: its worker died
    (or never picked it up). Charges stay as the ledger has them; the cost is read back."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = ResearchRun.objects.filter(status__in=[ResearchRun.Status.QUEUED, ResearchRun.Status.RUNNING], heartbeat_at__lt=cutoff)
    failed = 0
    for run in stale:
        seen = run.heartbeat_at.isoformat(timespec="seconds") if run.heartbeat_at else "never"
        reason = f"The worker running this research stopped (no heartbeat since {seen}); charges so far are kept."
        if _finish(run, status=ResearchRun.Status.FAILED, error=reason, only_if_active=True):
            failed += 1
    return failed


def research_run_cost_refresh(*, run: ResearchRun) -> int:
    if run.key_id is None:
        return run.cost_micros
    cost = key_spent_micros(key_id=run.key_id)
    ResearchRun.objects.filter(pk=run.pk).update(cost_micros=cost)
    run.cost_micros = cost
    return cost


# --- carrying a run out ---------------------------------------------------------------------


def research_run_execute(*, run_id: int) -> str:
    """Carry out a queued run; returns its final status. Safe to call twice: only the first
    call that moves it from queued to running does anything."""
    now = timezone.now()
    claimed = ResearchRun.objects.filter(pk=run_id, status=ResearchRun.Status.QUEUED).update(
        status=ResearchRun.Status.RUNNING, started_at=now, heartbeat_at=now, stage="Starting"
    )
    if not claimed:
        return "skipped"
    run = ResearchRun.objects.select_related("tenant").get(pk=run_id)
    key, secret = api_key_create(
        tenant=run.tenant,
        name=f"research run {run.pk}",
        daily_cap_micros=run.max_cost_micros,
        monthly_cap_micros=run.max_cost_micros,
        created_by=run.created_by,
    )
    ResearchRun.objects.filter(pk=run.pk).update(key_id=key.pk)
    run.key_id = key.pk
    worker = _Worker(run, secret)
    try:
        worker.carry_out()
    except RunStopped as stop:
        _finish(run, status=stop.status, error=stop.reason, report=worker.report())
        return stop.status
    except Exception as exc:  # a bug or an unexpected answer: the run says so, never vanishes
        log.exception("research run %s failed", run.pk)
        _finish(run, status=ResearchRun.Status.FAILED, error=f"Unexpected error: {type(exc).__name__}", report=worker.report())
        return ResearchRun.Status.FAILED
    finally:
        worker.close()
    _finish(run, status=ResearchRun.Status.SUCCEEDED, report=worker.report())
    return ResearchRun.Status.SUCCEEDED


def _finish(run: ResearchRun, *, status: str, error: str = "", report: dict | None = None, only_if_active: bool = False) -> bool:
    if run.key_id is not None:
        _key_revoke(run.key_id)
    fields = {
        "status": status,
        "error": error,
        "finished_at": timezone.now(),
        "stage": "Finished" if status == "succeeded" else status.capitalize(),
    }
    if report is not None:
        fields["report"] = report
    rows = ResearchRun.objects.filter(pk=run.pk)
    if only_if_active:
        rows = rows.filter(status__in=[ResearchRun.Status.QUEUED, ResearchRun.Status.RUNNING])
    else:
        rows = rows.filter(status=ResearchRun.Status.RUNNING)  # a reaped or deleted run stays as it is
    changed = rows.update(**fields)
    research_run_cost_refresh(run=run)
    return bool(changed)


def _key_revoke(key_id: int) -> None:
    try:
        api_key_revoke(key=api_key_get(key_id=key_id))
    except Exception:  # the key is gone already (tenant deleted): nothing left to revoke
        log.info("research key %s already gone", key_id)


class _Worker:
    def __init__(self, run: ResearchRun, secret: str) -> None:
        self.run = run
        self.client = httpx.Client(
            base_url=settings.RESEARCH_RELAY_URL.rstrip("/"),
            headers={"Authorization": f"Bearer {secret}"},
            timeout=httpx.Timeout(settings.RESEARCH_CALL_TIMEOUT_S, connect=10.0),
        )
        self.sub_questions: list[str] = []
        self.sources: list[dict] = list(run.sources)
        self.sections: list[dict] = []
        self.summary = ""
        self.models_used: list[str] = []

    def close(self) -> None:
        self.client.close()

    def report(self) -> dict:
        return {
            "title": self.run.question[:200],
            "summary": self.summary,
            "sections": self.sections,
            "citations": [{"n": i, "title": s["title"], "url": s.get("url", "")} for i, s in enumerate(self.sources, start=1)],
            "models_used": self.models_used,
        }

    def carry_out(self) -> None:
        run = self.run
        total = 1 + run.depth + 1 + (1 if run.use_web_search else 0)
        self.beat(stage="Planning sub-questions", done=0, total=total)
        plan = self.ask(
            run.model_ids[0],
            "You plan research. Answer with a numbered list of sub-questions, one per line.",
            f"Question: {run.question}\nWrite exactly {run.depth} sub-questions that together answer it.",
        )
        self.sub_questions = _sub_questions(plan, question=run.question, depth=run.depth)
        done = 1
        if run.use_web_search:
            self.beat(stage="Searching the web", done=done, total=total)
            self.sources += _web_search(run.question, limit=settings.RESEARCH_SEARCH_RESULTS)
            done += 1
        for index, sub_question in enumerate(self.sub_questions, start=1):
            self.beat(stage=f"Drafting section {index} of {len(self.sub_questions)}", done=done, total=total)
            cited = _relevant_sources(self.sources, sub_question + " " + run.question)
            listing = "\n\n".join(f"[{n}] {self.sources[n - 1]['title']}\n{self.sources[n - 1]['text'][:SOURCE_CHARS]}" for n in cited)
            text = self.ask(
                self.section_model(),
                "You write one section of a research report. Cite the numbered sources as [n] where you use them.",
                f"Main question: {run.question}\nThis section answers: {sub_question}\n\nSources:\n{listing or '(none given)'}",
                models=run.model_ids if run.mode != "single" else None,
            )
            self.sections.append({"heading": sub_question, "text": text, "citations": cited})
            done += 1
        self.beat(stage="Summarising", done=done, total=total)
        drafted = "\n\n".join(f"{s['heading']}\n{s['text'][:1500]}" for s in self.sections)
        self.summary = self.ask(
            run.model_ids[0], "You summarise research reports in one paragraph.", f"Question: {run.question}\n\nSections:\n{drafted}"
        )
        self.beat(stage="Finishing", done=total, total=total)

    def section_model(self) -> str:
        return self.run.model_ids[0] if self.run.mode == "single" else self.run.mode

    def beat(self, *, stage: str, done: int, total: int) -> None:
        """Heartbeat and progress; a run deleted or reaped meanwhile stops here."""
        alive = ResearchRun.objects.filter(pk=self.run.pk, status=ResearchRun.Status.RUNNING).update(
            heartbeat_at=timezone.now(),
            stage=stage,
            steps_done=done,
            steps_total=total,
            report=self.report(),
            request_ids=self.run.request_ids,
        )
        if not alive:
            raise RunStopped(ResearchRun.Status.FAILED, "The run was stopped elsewhere (deleted or marked failed).")
        research_run_cost_refresh(run=self.run)

    def ask(self, model: str, system: str, user: str, *, models: list[str] | None = None) -> str:
        body: dict = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": settings.RESEARCH_MAX_TOKENS,
        }
        if models:
            body["models"] = models
        try:
            response = self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise RunStopped(ResearchRun.Status.FAILED, f"The relay could not be reached: {type(exc).__name__}.") from None
        request_id = response.headers.get("x-request-id", "")
        if request_id:
            self.run.request_ids.append(request_id)
        if response.status_code == 402:
            raise RunStopped(
                ResearchRun.Status.STOPPED, "Stopped: " + _error_message(response) + " (the balance or this run's cost ceiling ran out)."
            )
        if response.status_code != 200:
            raise RunStopped(ResearchRun.Status.FAILED, f"{model} answered {response.status_code}: {_error_message(response)}")
        answer = response.json()
        for used in [answer.get("model")] + [s.get("model") for s in (answer.get("tokenhub") or {}).get("steps", [])]:
            if used and used not in self.models_used:
                self.models_used.append(used)
        return (answer["choices"][0]["message"].get("content") or "").strip()


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except Exception:
        return response.reason_phrase or "error"


_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def _sub_questions(plan: str, *, question: str, depth: int) -> list[str]:
    """The plan's lines (else its sentences), numbering removed; padded when a model gave fewer."""
    lines = [_NUMBERING.sub("", line).strip() for line in plan.splitlines()]
    found = [line for line in lines if len(line) > 3]
    if len(found) < depth:
        found = [s.strip() for s in re.split(r"(?<=[.?!])\s+", plan) if len(s.strip()) > 3]
    found = found[:depth]
    while len(found) < depth:
        found.append(f"{question} (aspect {len(found) + 1})")
    return [f[:300] for f in found]


_WORD = re.compile(r"\w{4,}", re.UNICODE)


def _relevant_sources(sources: list[dict], text: str, *, most: int = 4) -> list[int]:
    """Source numbers (1-based) sharing the most words with the text; every source when few."""
    if len(sources) <= most:
        return list(range(1, len(sources) + 1))
    wanted = {w.lower() for w in _WORD.findall(text)}
    scored = sorted(
        range(1, len(sources) + 1),
        key=lambda n: (-len(wanted & {w.lower() for w in _WORD.findall(sources[n - 1]["text"][:SOURCE_CHARS])}), n),
    )
    return sorted(scored[:most])


def _web_search(query: str, *, limit: int) -> list[dict]:
    """Results from the operator's search API (SearXNG's JSON: `GET URL?q=...&format=json`
    answering `{"results": [{"title", "url", "content"}]}`); none when it fails."""
    headers = {"Authorization": f"Bearer {settings.RESEARCH_SEARCH_API_KEY}"} if settings.RESEARCH_SEARCH_API_KEY else {}
    try:
        response = httpx.get(settings.RESEARCH_SEARCH_URL, params={"q": query, "format": "json"}, headers=headers, timeout=15.0)
        response.raise_for_status()
        results = response.json().get("results") or []
    except (httpx.HTTPError, ValueError):
        log.warning("research web search failed")
        return []
    return [
        {
            "title": str(r.get("title") or r.get("url") or "Result")[:200],
            "url": str(r.get("url") or "")[:500],
            "text": str(r.get("content") or ""),
        }
        for r in results[:limit]
        if isinstance(r, dict) and r.get("content")  # a result without text has nothing to cite
    ]
