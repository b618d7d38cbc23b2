from __future__ import annotations

import datetime as dt
import io
import itertools
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobot_api.adapters.documents import (
    DocumentReaderByKind,
    DocxTextExtractor,
)
from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits
from nanobot_api.domain.filetypes import FileKind
from tests import bigfiles, files

DOCUMENTS: list[tuple[FileKind, Callable[[str], bytes]]] = [
    (FileKind.PDF, files.make_pdf),
    (FileKind.DOCX, files.make_docx),
    (FileKind.XLSX, files.make_xlsx),
    (FileKind.PPTX, files.make_pptx),
]
OFFICE = ["docx", "xlsx", "pptx"]
KIND = {"docx": FileKind.DOCX, "xlsx": FileKind.XLSX, "pptx": FileKind.PPTX}

# A bound that tells a hang from slowness; how fast it is, bench/uploads.py measures.
HANG_GUARD_S = 10


@pytest.fixture(name="reader")
def _reader() -> DocumentReaderByKind:
    return DocumentReaderByKind.standard()


def limited(**bounds: float) -> DocumentReaderByKind:
    return DocumentReaderByKind.standard(ExtractionLimits(**bounds))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
async def test_the_token_of_every_document_reaches_the_text(
    reader: DocumentReaderByKind, kind: FileKind, make: Callable[[str], bytes]
) -> None:
    out = await reader.read(kind, make("tok-4f1d"), "doc")
    assert "tok-4f1d" in out.text
    assert not out.truncated


async def test_pdf_text_is_numbered_by_page(reader: DocumentReaderByKind) -> None:
    out = await reader.read(FileKind.PDF, files.make_pdf("tok", pages=2), "a.pdf")
    assert out.text == "--- Page 1 ---\npage 1 line 0 tok\n--- Page 2 ---\npage 2 line 0 tok"


async def test_word_paragraphs_and_tables_keep_their_order_and_rows(
    reader: DocumentReaderByKind,
) -> None:
    out = await reader.read(FileKind.DOCX, files.make_docx("tok", paragraphs=1), "a.docx")
    assert out.text.splitlines() == [
        "Report tok",
        "Paragraph 0 mentions tok.",
        "r0c0\tr0c1\tr0c2",
        "r1c0\tr1c1\tcell-tok",
    ]


async def test_a_merged_word_cell_appears_once(reader: DocumentReaderByKind) -> None:
    import docx

    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "wide"
    table.cell(0, 2).text = "narrow\nline two"
    buf = io.BytesIO()
    document.save(buf)
    out = await reader.read(FileKind.DOCX, buf.getvalue(), "m.docx")
    assert out.text == "wide\tnarrow line two"


async def test_sheets_are_named_and_rows_are_tab_separated(reader: DocumentReaderByKind) -> None:
    out = await reader.read(FileKind.XLSX, files.make_xlsx("tok", rows=1), "a.xlsx")
    assert out.text.splitlines() == [
        "## Sheet: Data",
        "name\tvalue\tnote",
        "row0\t0\ttok-0-0",
        "## Sheet: Sheet2",
        "name\tvalue\tnote",
        "row0\t0\ttok-1-0",
    ]


async def test_cells_of_every_type_read_as_text(reader: DocumentReaderByKind) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([True, 2.5, 3.0, dt.date(2024, 5, 1), "tab\there\nnewline", None, None])
    sheet.append([])
    sheet.append([None, "after a gap"])
    buf = io.BytesIO()
    workbook.save(buf)
    out = await reader.read(FileKind.XLSX, buf.getvalue(), "t.xlsx")
    assert out.text.splitlines()[1:] == [
        "TRUE\t2.5\t3\t2024-05-01T00:00:00\ttab here newline",
        "\tafter a gap",
    ]


async def test_slides_are_numbered_with_text_tables_groups_and_notes(
    reader: DocumentReaderByKind,
) -> None:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation(io.BytesIO(files.make_pptx("tok", slides=2)))
    group = deck.slides[1].shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1)).text = "grouped"
    buf = io.BytesIO()
    deck.save(buf)
    out = await reader.read(FileKind.PPTX, buf.getvalue(), "a.pptx")
    assert out.text.splitlines() == [
        "--- Slide 1 ---",
        "Slide title 1",
        "Body tok 1",
        "\ttcell-tok",
        "Notes: notes-tok",
        "--- Slide 2 ---",
        "Slide title 2",
        "Body tok 2",
        "grouped",
    ]


# ---------------------------------------------------------------------------
# Bounds: the text is cut short with a visible marker


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
async def test_text_past_max_chars_is_cut_with_a_marker(
    kind: FileKind, make: Callable[[str], bytes]
) -> None:
    out = await limited(max_chars=20).read(kind, make("tok"), "doc")
    assert out.truncated
    assert out.text.endswith("[... truncated: more than 20 characters]")
    assert len(out.text.split("\n[... truncated")[0]) <= 20


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
async def test_a_spent_time_budget_cuts_the_text(
    kind: FileKind, make: Callable[[str], bytes]
) -> None:
    out = await limited(time_budget_s=-1).read(kind, make("tok"), "doc")
    assert out == ExtractedText("[... truncated: time budget spent]", truncated=True)


async def test_pages_past_max_pages_are_left_out() -> None:
    out = await limited(max_pages=2).read(FileKind.PDF, files.make_pdf("t", pages=5), "a.pdf")
    assert "--- Page 2 ---" in out.text
    assert "--- Page 3 ---" not in out.text
    assert out.text.endswith("[... truncated: only the first 2 of 5 pages]")


async def test_slides_past_max_slides_are_left_out() -> None:
    out = await limited(max_slides=1).read(FileKind.PPTX, files.make_pptx("t", slides=3), "a.pptx")
    assert "--- Slide 2 ---" not in out.text
    assert out.text.endswith("[... truncated: only the first 1 of 3 slides]")


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ({"max_sheets": 1}, "only the first 1 of 3 sheets"),
        ({"max_rows": 4}, "more than 4 rows"),
        ({"max_cells": 10}, "more than 10 cells"),
    ],
)
async def test_sheets_rows_and_cells_are_bounded(bounds: dict[str, int], why: str) -> None:
    data = files.make_xlsx("t", sheets=3, rows=3)
    out = await limited(**bounds).read(FileKind.XLSX, data, "a.xlsx")
    assert out.text.endswith(f"[... truncated: {why}]")


async def test_a_sheet_declaring_a_huge_dimension_is_read_by_its_rows(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_xlsx("tok", sheets=1, rows=1)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        xml = src.read("xl/worksheets/sheet1.xml")
    import re

    xml = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', xml)
    data = files.replace_member(data, "xl/worksheets/sheet1.xml", xml)
    started = time.monotonic()
    out = await reader.read(FileKind.XLSX, data, "wide.xlsx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert "tok-0-0" in out.text


# ---------------------------------------------------------------------------
# Off the event loop, and lazily imported


async def test_the_event_loop_keeps_running_during_an_extraction(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_pdf("t", pages=300)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            await anyio.sleep(0.005)
            ticks.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        started = time.monotonic()
        await reader.read(FileKind.PDF, data, "a.pdf")
        ended = time.monotonic()
        tg.cancel_scope.cancel()
    # On the loop, the extraction would hold it for the whole read: one gap as long
    # as the read. Off it, the loop keeps turning; a busy machine may slow it (the
    # parser's thread shares the GIL) but never leaves one gap of half the read.
    moments = [started, *(t for t in ticks if t < ended), ended]
    longest_gap = max(b - a for a, b in itertools.pairwise(moments))
    assert longest_gap < (ended - started) / 2


def test_importing_the_readers_does_not_import_the_libraries() -> None:
    code = (
        "import sys, nanobot_api.adapters.documents, nanobot_api.app.attachments;"
        "print(sorted(m for m in ('pypdf', 'docx', 'openpyxl', 'pptx') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------
# A large Word body is streamed; the text is the same as python-docx gives


def _rich_docx(paragraphs: list[str]) -> bytes:
    import docx
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    run = document.add_paragraph("tab").add_run("after")
    run.add_tab()
    run.add_text("x")
    run.add_break()
    run.add_text("line")
    run.add_break(WD_BREAK.PAGE)
    run.add_text("page")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "merged"
    table.cell(1, 2).text = "a\nb"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def _both_ways(data: bytes, limits: ExtractionLimits | None = None) -> tuple[str, str]:
    whole = DocxTextExtractor(limits).extract(data, "a.docx")
    streamed = DocxTextExtractor(limits, stream_over=0).extract(data, "a.docx")
    return whole.text, streamed.text


def test_a_streamed_body_reads_like_python_docx() -> None:
    whole, streamed = _both_ways(_rich_docx(["one", "two"]))
    assert streamed == whole
    assert "tabafter\tx\nline" in whole
    assert "merged\t" in whole


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])), max_size=5))
def test_any_paragraphs_read_the_same_streamed(paragraphs: list[str]) -> None:
    whole, streamed = _both_ways(_rich_docx(paragraphs))
    assert streamed == whole


def test_a_streamed_body_stops_at_its_bounds() -> None:
    data = files.make_docx("tok", paragraphs=50)
    whole, streamed = _both_ways(data, ExtractionLimits(max_chars=100))
    assert streamed == whole
    assert streamed.endswith("[... truncated: more than 100 characters]")
    _, late = _both_ways(data, ExtractionLimits(time_budget_s=-1))
    assert late == "[... truncated: time budget spent]"


@pytest.mark.slow
def test_a_ten_megabyte_word_file_of_prose_reads_in_well_under_a_second() -> None:
    data = bigfiles.make_big_docx("big-tok", 10 * 1024 * 1024 - 65536)
    started = time.monotonic()
    out = DocxTextExtractor().extract(data, "big.docx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert "big-tok" in out.text
    assert out.truncated


# ---------------------------------------------------------------------------
# Excel's shared strings: read as far as the cells use them


async def test_shared_strings_read_as_openpyxl_reads_them(reader: DocumentReaderByKind) -> None:
    import openpyxl

    data = files.make_shared_strings_xlsx("tok", padding=3, cite_last=True)
    out = await reader.read(FileKind.XLSX, data, "s.xlsx")
    assert out.text.splitlines() == [
        "## Sheet: Sheet",
        "hello tok\trich text",
        "padding string 2",
    ]
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    sheet = workbook.active
    sheet.reset_dimensions()  # the sheet declares A1:A1, as in the reader
    values = [[c for c in row if c] for row in sheet.iter_rows(values_only=True)]
    workbook.close()
    assert values == [["hello tok", "rich text"], ["padding string 2"]]
