"""Text in and PDF out: the text of an uploaded source (plain text or PDF, read with pypdf), and
a run's report rendered to PDF by WeasyPrint from `templates/research/report_pdf.html`."""

from __future__ import annotations

import io

from django.template.loader import render_to_string
from pypdf import PdfReader
from pypdf.errors import PdfReadError
from weasyprint import HTML

from .models import ResearchRun

MAX_SOURCE_CHARS = 200_000  # of one source kept on the run


class SourceUnreadable(Exception):
    pass


def source_text_extract(*, name: str, data: bytes) -> str:
    if data[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        try:
            reader = PdfReader(io.BytesIO(data))
            text = "\n".join((page.extract_text() or "") for page in reader.pages)
        except (PdfReadError, ValueError, KeyError, TypeError) as exc:
            raise SourceUnreadable(f"{name}: not a readable PDF ({type(exc).__name__})") from None
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SourceUnreadable(f"{name}: only UTF-8 text or PDF files can be read") from None
    text = text.replace("\x00", "").strip()
    if not text:
        raise SourceUnreadable(f"{name}: no text found in it")
    return text[:MAX_SOURCE_CHARS]


def _fetch_nothing(url: str, *args, **kwargs):
    """The report needs no outside resource; what models or sources write must not make the
    server fetch a URL or read a file (the template escapes it too)."""
    raise ValueError(f"research reports fetch no resources ({url[:40]})")


def report_pdf_render(*, run: ResearchRun) -> bytes:
    html = render_to_string("research/report_pdf.html", {"run": run, "report": run.report or {}})
    return HTML(string=html, url_fetcher=_fetch_nothing).write_pdf()
