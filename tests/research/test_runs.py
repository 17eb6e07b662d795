"""Research runs against the running relay on the offline `simulated` provider: every call goes
through /v1 as the tenant, is charged, cited, capped by the run's ceiling, and a run whose
worker died is marked failed with its charges intact."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiKey
from billing.models import LedgerEntry
from research.models import ResearchRun
from research.services import (
    _Worker,
    research_run_create,
    research_run_execute,
    research_runs_reap,
)
from tests.conftest import make_tenant

SOURCES = [
    {"title": "Tea harvests in Yunnan", "text": "Yunnan tea gardens harvest leaves in spring; pu-erh is aged for years."},
    {"title": "Coffee in Ethiopia", "text": "Ethiopian coffee grows wild in highland forests and is picked by hand."},
]


def usage_charged_micros(tenant) -> int:
    return -sum(LedgerEntry.objects.filter(balance__tenant=tenant, kind="usage").values_list("amount_micros", flat=True))


def start(tenant, **overrides) -> ResearchRun:
    fields = {"question": "How are tea and coffee grown?", "depth": 3, "model_ids": ["sim-model"], "sources": SOURCES,
              "max_cost_micros": 1_000_000}
    return research_run_create(tenant=tenant, **{**fields, **overrides})


def test_a_run_writes_cited_sections_and_costs_what_the_ledger_says(research_relay):
    tenant = make_tenant("researcher")
    run = start(tenant)

    assert research_run_execute(run_id=run.pk) == "succeeded"

    run.refresh_from_db()
    report = run.report
    assert run.status == "succeeded" and run.error == ""
    assert len(report["sections"]) == 3 and all(s["text"] for s in report["sections"])
    assert all(s["citations"] == [1, 2] for s in report["sections"])  # both sources given to each section
    assert [c["title"] for c in report["citations"]] == ["Tea harvests in Yunnan", "Coffee in Ethiopia"]
    assert report["summary"] and report["models_used"]
    assert len(run.request_ids) == 1 + 3 + 1  # plan, three sections, summary
    assert run.cost_micros > 0 and run.cost_micros == usage_charged_micros(tenant)
    assert ApiKey.objects.get(pk=run.key_id).status == ApiKey.Status.REVOKED


def test_a_run_drafts_through_orchestration_when_a_mode_is_chosen(research_relay):
    tenant = make_tenant("orchestrated")
    run = start(tenant, depth=1, mode="tokenhub/refine")

    assert research_run_execute(run_id=run.pk) == "succeeded"

    run.refresh_from_db()
    assert run.cost_micros == usage_charged_micros(tenant)
    # plan + summary, plus the refine's draft, critiques and rewrites: more charges than calls made
    assert LedgerEntry.objects.filter(balance__tenant=tenant, kind="usage").count() > len(run.request_ids)


def test_a_run_stops_cleanly_when_its_ceiling_runs_out(research_relay):
    tenant = make_tenant("frugal")
    # each call holds its worst case (1,024 output tokens at 2 USD/M, about 2,100 micros) and is
    # charged far less: a few calls fit, not all eight
    run = start(tenant, depth=6, max_cost_micros=2_600)

    assert research_run_execute(run_id=run.pk) == "stopped"

    run.refresh_from_db()
    assert "ceiling" in run.error
    assert 0 < len(run.report["sections"]) < 6
    assert 0 < run.cost_micros <= run.max_cost_micros
    assert run.cost_micros == usage_charged_micros(tenant)


def test_a_run_stops_cleanly_when_the_balance_runs_out(research_relay):
    tenant = make_tenant("broke", credit=None, wallet=None)
    run = start(tenant)

    assert research_run_execute(run_id=run.pk) == "stopped"

    run.refresh_from_db()
    assert run.error.startswith("Stopped:") and run.cost_micros == 0 == usage_charged_micros(tenant)


def test_a_run_whose_worker_died_is_marked_failed_with_its_charges_intact(research_relay, settings):
    tenant = make_tenant("orphaned")
    run = start(tenant)
    # what research_run_execute does up to its first call, then the worker "dies": no finish
    ResearchRun.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now(), heartbeat_at=timezone.now())
    from accounts.services import api_key_create

    key, secret = api_key_create(tenant=tenant, name="research run", daily_cap_micros=run.max_cost_micros,
                                 monthly_cap_micros=run.max_cost_micros)
    ResearchRun.objects.filter(pk=run.pk).update(key_id=key.pk)
    run.refresh_from_db()
    worker = _Worker(run, secret)
    worker.ask("sim-model", "plan", "a question")
    worker.close()
    charged = usage_charged_micros(tenant)
    assert charged > 0

    assert research_runs_reap(older_than_s=60) == 0  # its heartbeat is fresh: left alone
    ResearchRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=30))  # the clock moves on
    assert research_runs_reap(older_than_s=60) == 1

    run.refresh_from_db()
    assert run.status == "failed" and "no heartbeat since" in run.error
    assert run.cost_micros == charged == usage_charged_micros(tenant)  # nothing refunded, nothing lost
    assert ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.REVOKED
    assert research_run_execute(run_id=run.pk) == "skipped"  # a late redelivery does not run it again


def test_a_stale_run_is_failed_by_the_periodic_job(research_relay, settings):
    from relay.jobs import Runner

    run = start(make_tenant("queued-forever"))
    ResearchRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))
    settings.RESEARCH_STALE_AFTER_S = 60

    runner = Runner(first_delay_s=0)
    assert "research-reap" in runner.run_due()

    run.refresh_from_db()
    assert run.status == "failed" and runner.jobs["research-reap"].last_result == {"failed": 1}


def test_bad_input_is_refused_and_makes_nothing(transactional_db, settings):
    import pytest

    from research.services import ResearchError

    tenant = make_tenant("careless")
    for overrides, message in [
        ({"question": "  "}, "Ask a question."),
        ({"depth": 0}, "Depth must be between 1 and 8"),
        ({"depth": 9}, "Depth must be between 1 and 8"),
        ({"model_ids": []}, "Name between one and eight models."),
        ({"mode": "tokenhub/magic"}, "Unknown mode"),
        ({"max_cost_micros": 0}, "The cost ceiling must be above 0"),
        ({"max_cost_micros": settings.RESEARCH_MAX_COST_MICROS + 1}, "The cost ceiling must be above 0"),
        ({"use_web_search": True}, "Web search is not configured"),
    ]:
        with pytest.raises(ResearchError, match=message.replace(".", r"\.")):
            start(tenant, **overrides)
    assert not ResearchRun.objects.exists()


def test_web_search_results_become_cited_sources(research_relay, settings):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.fakes.server import ServerThread

    asked = []

    async def search(request):
        asked.append(dict(request.query_params) | {"auth": request.headers.get("authorization")})
        return JSONResponse({"results": [
            {"title": "Tea on Wikipedia", "url": "https://example.org/tea", "content": "Tea is grown on bushes."},
            {"title": "Empty", "url": "https://example.org/empty"},
        ]})

    server = ServerThread(Starlette(routes=[Route("/search", search)])).start()
    try:
        settings.RESEARCH_SEARCH_URL = server.url + "/search"
        settings.RESEARCH_SEARCH_API_KEY = "search-secret"
        run = start(make_tenant("searcher"), depth=1, sources=[], use_web_search=True)

        assert research_run_execute(run_id=run.pk) == "succeeded"
    finally:
        server.stop()

    run.refresh_from_db()
    assert asked == [{"q": "How are tea and coffee grown?", "format": "json", "auth": "Bearer search-secret"}]
    assert run.report["citations"] == [{"n": 1, "title": "Tea on Wikipedia", "url": "https://example.org/tea"}]
    assert run.report["sections"][0]["citations"] == [1]  # the result without text is left out
