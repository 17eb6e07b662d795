"""A new customer, in a real browser (Debian's chromium), signs up, starts a research run on the
offline `simulated` provider, watches it finish live (htmx polls the status), and downloads a
cited PDF report. Pages go to var/screenshots/ for review."""

from __future__ import annotations

import io

from pypdf import PdfReader

from tests.accounts.test_browser import DESKTOP, browser, collected_static, shoot, sign_up_and_verify  # noqa: F401  (fixtures)
from tests.research.test_pages import render_pages


def test_a_new_customer_produces_and_downloads_a_cited_report(research_relay, settings, browser):  # noqa: F811
    settings.SIGNUP_CREDIT_USD = "5"
    base = research_relay.url
    page = browser.new_page(viewport=DESKTOP)
    sign_up_and_verify(page, base, "researcher@example.com")

    page.get_by_role("link", name="Research").click()
    assert page.locator("h1").inner_text() == "Research"
    page.get_by_label("Question").fill("How are tea and coffee grown? 茶和咖啡是怎样种植的？")
    page.get_by_label("Depth").fill("2")
    page.get_by_label("Models").fill("sim-model")
    page.get_by_label("Cost ceiling (USD)").fill("0.5")
    page.get_by_label("Sources (pasted)").fill(
        "Tea harvests in Yunnan\nYunnan tea gardens harvest leaves in spring.\n---\n"
        "Coffee in Ethiopia\nEthiopian coffee grows wild in highland forests."
    )
    shoot(page, "research-new")
    page.get_by_role("button", name="Start research").click()

    page.locator('[data-status="succeeded"]').wait_for(timeout=60_000)  # no reload: the fragment polls
    assert "/research/" in page.url and "Download the report (PDF)" in page.content()
    assert page.locator("#run-status h2").count() >= 4  # summary, two sections, sources
    shoot(page, "research-run")

    with page.expect_download() as waiting:
        page.get_by_role("link", name="Download the report (PDF)").click()
    pdf = open(waiting.value.path(), "rb").read()
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "茶和咖啡是怎样种植的" in "".join(text.split())  # the title may wrap
    for expected in ["Summary", "1. ", "2. ", "Sources: [1] [2]", "Citations",
                     "Tea harvests in Yunnan", "Coffee in Ethiopia", "Models used", "sim-model", "Cost"]:
        assert expected in text, expected
    render_pages(pdf, "research-browser-report")

    page.goto(base + "/research/")
    assert "succeeded" in page.locator("tbody").inner_text()
    shoot(page, "research-list")
