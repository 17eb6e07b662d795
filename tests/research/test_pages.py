"""The research workspace's pages: start a run (pasted and uploaded sources), follow it, its PDF,
duplicate and delete; another tenant's run id is a 404 on every page."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from pypdf import PdfReader
from weasyprint import HTML

from billing.models import LedgerEntry
from research.models import ResearchRun
from research.services import research_run_create
from tests.research.conftest import wait_until_done

SHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots"
FORM = {"question": "How are tea and coffee grown?", "depth": "2", "models": "sim-model", "mode": "single", "max_cost": "0.5"}


def finished_run(tenant, **overrides) -> ResearchRun:
    run = research_run_create(tenant=tenant, question="Q", depth=1, model_ids=["m"], max_cost_micros=1_000_000)
    fields = {"status": "succeeded", "cost_micros": 1234, "report": {
        "title": "茶与咖啡的种植 — how tea and coffee are grown",
        "summary": "Tea is grown in Yunnan; coffee in Ethiopia. 云南的茶园在春天采摘。",
        "sections": [
            {"heading": "Where tea grows", "text": "In Yunnan gardens [1].", "citations": [1]},
            {"heading": "Where coffee grows", "text": "In Ethiopian highland forests [2].", "citations": [2]},
        ],
        "citations": [{"n": 1, "title": "Tea harvests in Yunnan", "url": ""},
                      {"n": 2, "title": "Coffee in Ethiopia", "url": "https://example.org/coffee"}],
        "models_used": ["sim-model"],
    }, **overrides}
    ResearchRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def test_a_customer_starts_a_run_with_pasted_and_uploaded_sources(research_relay, cast, login):
    client = login(cast["charlie"])  # a member may research; the team is billed
    pdf = HTML(string="<p>Ethiopian coffee grows wild in highland forests.</p>").write_pdf()
    upload = io.BytesIO(pdf)
    upload.name = "coffee.pdf"
    notes = io.BytesIO("Yunnan tea gardens harvest in spring.".encode())
    notes.name = "tea.txt"

    response = client.post("/research/", {**FORM, "sources_text": "Pasted one\nfirst body\n---\nPasted two\nsecond body",
                                          "source_files": [upload, notes]})

    assert response.status_code == 302
    run = ResearchRun.objects.get(tenant=cast["charlie"].tenant)
    assert response["Location"] == f"/research/{run.pk}/"
    assert [s["title"] for s in run.sources] == ["Pasted one", "Pasted two", "coffee.pdf", "tea.txt"]
    assert "highland forests" in run.sources[2]["text"]
    run = wait_until_done(run.pk)
    assert run.status == "succeeded" and run.created_by == cast["charlie"].user
    page = client.get(f"/research/{run.pk}/")
    assert page.status_code == 200 and b"Download the report (PDF)" in page.content
    status = client.get(f"/research/{run.pk}/status/")
    assert b'data-status="succeeded"' in status.content and b"hx-get" not in status.content  # polling stops


def test_bad_input_is_refused_with_a_message_and_makes_nothing(research_relay, cast, login):
    client = login(cast["alice"])
    cases = [
        ({**FORM, "depth": "99"}, "Ensure this value is less than or equal to 8."),
        ({**FORM, "max_cost": "0"}, "The cost ceiling must be above 0."),
        ({**FORM, "mode": "tokenhub/magic"}, "Select a valid choice."),
        ({**FORM, "use_web_search": "on"}, "Web search is not configured on this TokenHub."),
    ]
    for data, message in cases:
        response = client.post("/research/", data)
        assert response.status_code == 400 and message in response.content.decode(), message
    broken = io.BytesIO(b"%PDF-1.7 not really")
    broken.name = "broken.pdf"
    response = client.post("/research/", {**FORM, "source_files": [broken]})
    assert response.status_code == 400 and "broken.pdf: not a readable PDF" in response.content.decode()
    assert not ResearchRun.objects.exists()


def test_another_tenants_run_is_a_404_everywhere(cast, login):
    run = finished_run(cast["alice"].tenant)
    client = login(cast["bob"])

    for method, url in [("get", ""), ("get", "status/"), ("get", "report.pdf"), ("post", "duplicate/"), ("post", "delete/")]:
        assert getattr(client, method)(f"/research/{run.pk}/{url}").status_code == 404, url
    # the link, not the bare number: a pk of 4 is also in the empty table's colspan="4"
    assert f"/research/{run.pk}/" not in client.get("/research/").content.decode().split("<caption>")[1]
    assert ResearchRun.objects.filter(tenant=cast["alice"].tenant).count() == 1


def test_a_run_is_duplicated_and_deleted_with_its_charges_kept(research_relay, cast, login):
    client = login(cast["alice"])
    client.post("/research/", FORM)
    first = wait_until_done(ResearchRun.objects.get().pk)
    charged = LedgerEntry.objects.filter(balance__tenant=cast["alice"].tenant, kind="usage").count()

    response = client.post(f"/research/{first.pk}/duplicate/")
    second = ResearchRun.objects.exclude(pk=first.pk).get()
    assert response["Location"] == f"/research/{second.pk}/"
    assert (second.question, second.depth, second.model_ids) == (first.question, first.depth, first.model_ids)
    wait_until_done(second.pk)

    assert client.post(f"/research/{first.pk}/delete/").status_code == 302
    assert list(ResearchRun.objects.values_list("pk", flat=True)) == [second.pk]
    assert LedgerEntry.objects.filter(balance__tenant=cast["alice"].tenant, kind="usage").count() == 2 * charged


def test_the_report_pdf_has_its_sections_citations_models_and_cost_in_latin_and_chinese(cast, login):
    run = finished_run(cast["alice"].tenant)

    response = login(cast["alice"]).get(f"/research/{run.pk}/report.pdf")

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    for expected in ["茶与咖啡的种植", "Summary", "1. Where tea grows", "2. Where coffee grows", "Sources: [1]",
                     "Citations", "Tea harvests in Yunnan", "https://example.org/coffee", "Models used", "sim-model",
                     "0.001234 USD"]:
        assert expected in text, expected
    reader = PdfReader(io.BytesIO(response.content))
    fonts = {str(ref.get_object()["/BaseFont"]) for page in reader.pages for ref in page["/Resources"]["/Font"].values()}
    assert any("WenQuanYi" in f for f in fonts), fonts  # the Chinese text has a font of its own, not boxes
    render_pages(response.content, "research-report")


def test_an_unfinished_run_has_no_pdf_yet(cast, login):
    run = finished_run(cast["alice"].tenant, status="running")
    assert login(cast["alice"]).get(f"/research/{run.pk}/report.pdf").status_code == 404


def render_pages(pdf: bytes, name: str) -> None:
    """Pages to PNG in var/screenshots/ for review (pdftoppm, from poppler-utils: .ci/run installs it)."""
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm is missing: apt-get install poppler-utils (.ci/run does)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    source = SHOTS / f"{name}.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(source), str(SHOTS / name)], check=True, timeout=60)
    assert list(SHOTS.glob(f"{name}*.png"))


def test_markup_from_a_model_or_source_is_printed_never_fetched(cast, login):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tests.fakes.server import ServerThread

    fetched = []

    async def anything(request):
        fetched.append(request.url.path)
        return Response(b"")

    server = ServerThread(Starlette(routes=[Route("/{path:path}", anything)])).start()
    try:
        lure = f'<img src="{server.url}/img"><link rel="stylesheet" href="{server.url}/css"><img src="file:///etc/passwd">'
        run = finished_run(cast["alice"].tenant, report={
            "title": "Lure", "summary": lure, "sections": [{"heading": lure, "text": lure, "citations": [1]}],
            "citations": [{"n": 1, "title": lure, "url": ""}], "models_used": ["sim-model"],
        })
        response = login(cast["alice"]).get(f"/research/{run.pk}/report.pdf")
    finally:
        server.stop()

    assert response.status_code == 200 and fetched == []
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(response.content)).pages)
    assert '<img src="file:///etc/passwd">' in "".join(text.split("\n"))  # printed as text
