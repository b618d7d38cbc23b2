from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanobot_api.adapters.documents import (
    DocumentReaderByKind,
    DocxTextExtractor,
    OpenpyxlTextExtractor,
    PptxTextExtractor,
    PypdfTextExtractor,
)
from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits
from nanobot_api.domain.errors import (
    InvalidRequest,
    NanobotError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from nanobot_api.domain.filetypes import FileKind
from tests import files
from tests.strategies import any_bytes, file_bytes

DOCUMENTS: list[tuple[FileKind, Callable[[str], bytes]]] = [
    (FileKind.PDF, files.make_pdf),
    (FileKind.DOCX, files.make_docx),
    (FileKind.XLSX, files.make_xlsx),
    (FileKind.PPTX, files.make_pptx),
]
OFFICE = ["docx", "xlsx", "pptx"]
KIND = {"docx": FileKind.DOCX, "xlsx": FileKind.XLSX, "pptx": FileKind.PPTX}


@pytest.fixture(name="reader")
def _reader() -> DocumentReaderByKind:
    return DocumentReaderByKind.standard()


def _limited(**bounds: float) -> DocumentReaderByKind:
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
    out = await _limited(max_chars=20).read(kind, make("tok"), "doc")
    assert out.truncated
    assert out.text.endswith("[... truncated: more than 20 characters]")
    assert len(out.text.split("\n[... truncated")[0]) <= 20


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
async def test_a_spent_time_budget_cuts_the_text(
    kind: FileKind, make: Callable[[str], bytes]
) -> None:
    out = await _limited(time_budget_s=-1).read(kind, make("tok"), "doc")
    assert out == ExtractedText("[... truncated: time budget spent]", truncated=True)


async def test_pages_past_max_pages_are_left_out() -> None:
    out = await _limited(max_pages=2).read(FileKind.PDF, files.make_pdf("t", pages=5), "a.pdf")
    assert "--- Page 2 ---" in out.text
    assert "--- Page 3 ---" not in out.text
    assert out.text.endswith("[... truncated: only the first 2 of 5 pages]")


async def test_slides_past_max_slides_are_left_out() -> None:
    out = await _limited(max_slides=1).read(FileKind.PPTX, files.make_pptx("t", slides=3), "a.pptx")
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
    out = await _limited(**bounds).read(FileKind.XLSX, data, "a.xlsx")
    assert out.text.endswith(f"[... truncated: {why}]")


async def test_a_sheet_declaring_a_huge_dimension_is_read_by_its_rows(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_xlsx("tok", sheets=1, rows=1)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        xml = src.read("xl/worksheets/sheet1.xml")
    import re

    xml = re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', xml)
    data = files._replace_member(data, "xl/worksheets/sheet1.xml", xml)
    started = time.monotonic()
    out = await reader.read(FileKind.XLSX, data, "wide.xlsx")
    assert time.monotonic() - started < 2
    assert "tok-0-0" in out.text


# ---------------------------------------------------------------------------
# Hostile files: refused or cut, fast, never another exception


@pytest.mark.parametrize("kind", OFFICE)
async def test_a_deflate_bomb_disguised_as_office_is_refused_before_inflating(
    reader: DocumentReaderByKind, kind: str
) -> None:
    data = files.make_zip_bomb(kind, inflated_mib=64)
    with pytest.raises(PayloadTooLarge, match=r"looks like a zip bomb: member .* inflates"):
        await reader.read(KIND[kind], data, f"bomb.{kind}")


@pytest.mark.parametrize("kind", OFFICE)
async def test_a_bomb_past_the_inflated_size_bound_is_refused(
    reader: DocumentReaderByKind, kind: str
) -> None:
    data = files.make_zip_bomb(kind, inflated_mib=256)
    with pytest.raises(PayloadTooLarge, match=r"inflates to more than 128 MB"):
        await reader.read(KIND[kind], data, f"bomb.{kind}")


@pytest.mark.parametrize("kind", OFFICE)
async def test_an_overlapping_entries_bomb_is_refused(
    reader: DocumentReaderByKind, kind: str
) -> None:
    data = files.make_overlap_bomb(kind, copies=400)
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLarge, match="inflates to more than"):
        await reader.read(KIND[kind], data, f"overlap.{kind}")


async def test_a_zip_with_too_many_members_is_refused() -> None:
    data = files.make_many_members_zip("xlsx", members=300)
    with pytest.raises(PayloadTooLarge, match="too many archive members"):
        await _limited(max_zip_members=100).read(FileKind.XLSX, data, "many.xlsx")


async def test_an_encrypted_zip_member_is_refused(reader: DocumentReaderByKind) -> None:
    data = bytearray(files.make_docx("t"))
    # Set the "encrypted" flag of the first central directory entry.
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 0x01
    with pytest.raises(InvalidRequest, match="encrypted"):
        await reader.read(FileKind.DOCX, bytes(data), "locked.docx")


async def test_a_pdf_of_thousands_of_pages_is_cut_fast() -> None:
    data = files.make_pdf("t", pages=3000)
    started = time.monotonic()
    out = await _limited(max_pages=50).read(FileKind.PDF, data, "huge.pdf")
    assert time.monotonic() - started < 2
    assert out.text.endswith("[... truncated: only the first 50 of 3000 pages]")


@pytest.mark.slow
async def test_a_pdf_of_thousands_of_pages_is_cut_within_seconds_by_default(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_pdf("t", pages=5000)
    started = time.monotonic()
    out = await reader.read(FileKind.PDF, data, "huge.pdf")
    assert time.monotonic() - started < 5
    assert out.truncated


async def test_entity_expansion_in_word_xml_is_harmless(reader: DocumentReaderByKind) -> None:
    data = files.make_docx("t", paragraphs=1, table=False)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        xml = src.read("word/document.xml")
    entities = b'<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">' + b"".join(
        b'<!ENTITY %s "%s">' % (chr(98 + n).encode(), b"&%s;" % chr(97 + n).encode() * 10)
        for n in range(8)
    )
    xml = xml.replace(b"?>", b"?><!DOCTYPE w:document [" + entities + b"]>", 1)
    xml = xml.replace(b"Paragraph 0", b"&i;", 1)
    bomb = files._replace_member(data, "word/document.xml", xml)
    started = time.monotonic()
    try:
        out = await reader.read(FileKind.DOCX, bomb, "laughs.docx")
    except InvalidRequest:
        pass
    else:
        assert len(out.text) <= ExtractionLimits().max_chars + 100
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
async def test_a_corrupt_document_is_an_invalid_request_naming_it(
    reader: DocumentReaderByKind, kind: FileKind, make: Callable[[str], bytes]
) -> None:
    data = files.corrupt(make("t") if kind is not FileKind.PDF else _compressed_pdf())
    with pytest.raises((InvalidRequest, UnsupportedMediaType), match=r"'bad\.doc'"):
        await reader.read(kind, data, "bad.doc")


def _compressed_pdf() -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(files.make_pdf("t", pages=3)))
    for page in writer.pages:
        page.compress_content_streams()
    buf = io.BytesIO()
    writer.write(buf)
    # Keep the header, break everything after it.
    return buf.getvalue()[:20] + bytes(range(256)) * 8


async def test_a_password_protected_pdf_is_refused_and_an_open_one_read(
    reader: DocumentReaderByKind,
) -> None:
    import pypdf

    def encrypted(password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=io.BytesIO(files.make_pdf("secret-tok")))
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
        buf = io.BytesIO()
        writer.write(buf)
        return buf.getvalue()

    with pytest.raises(InvalidRequest, match=r"'locked\.pdf': it is password-protected"):
        await reader.read(FileKind.PDF, encrypted("pw"), "locked.pdf")
    assert "secret-tok" in (await reader.read(FileKind.PDF, encrypted(""), "open.pdf")).text


@pytest.mark.parametrize(("kind", "make"), DOCUMENTS, ids=[k.name for k, _ in DOCUMENTS])
@pytest.mark.parametrize(
    "data", [b"", files.make_elf(), files.make_pe()], ids=["empty", "elf", "pe"]
)
async def test_executables_and_empty_files_never_pass_as_documents(
    reader: DocumentReaderByKind, kind: FileKind, make: Callable[[str], bytes], data: bytes
) -> None:
    name = "../../x\x00.doc"
    with pytest.raises(NanobotError) as info:
        await reader.read(kind, data, name)
    assert isinstance(info.value, InvalidRequest | UnsupportedMediaType)


@pytest.mark.parametrize(
    "extractor",
    [PypdfTextExtractor(), DocxTextExtractor(), OpenpyxlTextExtractor(), PptxTextExtractor()],
    ids=lambda e: type(e).__name__,
)
async def test_an_extractor_refuses_a_kind_it_does_not_read(
    extractor: PypdfTextExtractor,
) -> None:
    with pytest.raises(UnsupportedMediaType, match=r"'a\.png'"):
        await extractor.read(FileKind.PNG, files.make_png("t"), "a.png")


async def test_the_dispatcher_refuses_a_kind_without_reader(reader: DocumentReaderByKind) -> None:
    with pytest.raises(UnsupportedMediaType, match=r"'notes\.txt'"):
        await reader.read(FileKind.TEXT, b"hello", "notes.txt")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([k for k, _ in DOCUMENTS]).flatmap(
        lambda k: st.tuples(st.just(k), st.one_of(file_bytes(k), any_bytes()))
    )
)
def test_any_bytes_give_text_or_a_domain_error(kind_and_data: tuple[FileKind, bytes]) -> None:
    kind, data = kind_and_data
    reader = DocumentReaderByKind.standard()

    async def read() -> None:
        try:
            out = await reader.read(kind, data, "fuzz")
        except NanobotError:
            return
        assert isinstance(out.text, str)

    anyio.run(read)


# ---------------------------------------------------------------------------
# Off the event loop, and lazily imported


async def test_the_event_loop_keeps_running_during_an_extraction(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_pdf("t", pages=300)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        started = time.monotonic()
        await reader.read(FileKind.PDF, data, "a.pdf")
        elapsed = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert ticks >= elapsed / 0.005 / 4


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
    data = files.make_big_docx("big-tok", 10 * 1024 * 1024 - 65536)
    started = time.monotonic()
    out = DocxTextExtractor().extract(data, "big.docx")
    assert time.monotonic() - started < 1
    assert "big-tok" in out.text
    assert out.truncated


# ---------------------------------------------------------------------------
# PDF page trees: walked lazily, inheritance honoured, hostile shapes harmless


def _pdf_tree(pages: int, fanout: int, *, cyclic: bool = False) -> bytes:
    """Pages under intermediate /Pages nodes that hold the font resources."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    content = b"BT /F1 10 Tf 50 700 Td (inherited-tok) Tj ET"
    objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    middles = []
    for start in range(0, pages, fanout):
        kids = []
        for _ in range(start, min(pages, start + fanout)):
            objects.append(b"<< /Type /Page /MediaBox [0 0 612 792] /Contents 4 0 R >>")
            kids.append(len(objects))
        if cyclic:
            kids.append(2)
        refs = b" ".join(b"%d 0 R" % k for k in kids)
        objects.append(
            b"<< /Type /Pages /Kids [%s] /Count %d /Resources << /Font << /F1 3 0 R >> >> >>"
            % (refs, len(kids))
        )
        middles.append(len(objects))
    refs = b" ".join(b"%d 0 R" % m for m in middles)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, pages)
    return files._pdf_file(objects)


async def test_pages_inherit_resources_from_their_page_tree(
    reader: DocumentReaderByKind,
) -> None:
    out = await reader.read(FileKind.PDF, _pdf_tree(3, 2), "tree.pdf")
    assert out.text.count("inherited-tok") == 3
    assert "--- Page 3 ---" in out.text


async def test_a_cyclic_page_tree_ends(reader: DocumentReaderByKind) -> None:
    out = await reader.read(FileKind.PDF, _pdf_tree(4, 2, cyclic=True), "cycle.pdf")
    assert out.text.count("--- Page") == 4


async def test_a_hundred_thousand_pages_are_cut_without_building_them_all() -> None:
    data = _pdf_tree(100_000, 1000)
    started = time.monotonic()
    out = await _limited(max_pages=20).read(FileKind.PDF, data, "many.pdf")
    assert time.monotonic() - started < 2
    assert out.text.endswith("[... truncated: only the first 20 of 100000 pages]")
