"""Hostile documents: refused or cut short, fast, and never with another exception."""

from __future__ import annotations

import io
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
from nanobot_api.domain.attachments import ExtractionLimits
from nanobot_api.domain.errors import (
    InvalidRequest,
    NanobotError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from nanobot_api.domain.filetypes import FileKind
from tests import files
from tests.adapters.test_documents import DOCUMENTS, HANG_GUARD_S, KIND, OFFICE, limited
from tests.strategies import any_bytes, file_bytes


@pytest.fixture(name="reader")
def _reader() -> DocumentReaderByKind:
    return DocumentReaderByKind.standard()


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
        await limited(max_zip_members=100).read(FileKind.XLSX, data, "many.xlsx")


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
    out = await limited(max_pages=50).read(FileKind.PDF, data, "huge.pdf")
    assert time.monotonic() - started < HANG_GUARD_S
    assert out.text.endswith("[... truncated: only the first 50 of 3000 pages]")


@pytest.mark.slow
async def test_a_pdf_of_thousands_of_pages_is_cut_within_seconds_by_default(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_pdf("t", pages=5000)
    started = time.monotonic()
    out = await reader.read(FileKind.PDF, data, "huge.pdf")
    assert time.monotonic() - started < HANG_GUARD_S
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
    bomb = files.replace_member(data, "word/document.xml", xml)
    started = time.monotonic()
    try:
        out = await reader.read(FileKind.DOCX, bomb, "laughs.docx")
    except InvalidRequest:
        pass
    else:
        assert len(out.text) <= ExtractionLimits().max_chars + 100
    assert time.monotonic() - started < HANG_GUARD_S


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
    return files.pdf_file(objects)


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
    out = await limited(max_pages=20).read(FileKind.PDF, data, "many.pdf")
    assert time.monotonic() - started < HANG_GUARD_S
    assert out.text.endswith("[... truncated: only the first 20 of 100000 pages]")


async def test_a_huge_shared_string_table_costs_only_what_the_cells_use(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_shared_strings_xlsx("tok", padding=400_000)
    started = time.monotonic()
    out = await reader.read(FileKind.XLSX, data, "strings.xlsx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert "hello tok" in out.text


async def test_a_cell_citing_the_end_of_a_huge_table_is_stopped_by_the_time_budget() -> None:
    data = files.make_shared_strings_xlsx("tok", padding=400_000, cite_last=True)
    started = time.monotonic()
    out = await limited(time_budget_s=0.05).read(FileKind.XLSX, data, "strings.xlsx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert out.text.endswith("[... truncated: time budget spent]")


async def test_a_cell_citing_a_missing_shared_string_is_an_invalid_request(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_shared_strings_xlsx("tok")
    broken = files.replace_member(
        data,
        "xl/worksheets/sheet1.xml",
        _sheet_xml(data).replace(b"<v>1</v>", b"<v>99</v>"),
    )
    with pytest.raises(InvalidRequest, match=r"'bad\.xlsx'"):
        await reader.read(FileKind.XLSX, broken, "bad.xlsx")


def _sheet_xml(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("xl/worksheets/sheet1.xml")


# ---------------------------------------------------------------------------
# XML a library would parse whole is bounded; the rest is streamed


def _member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def _numbers(count: int, template: bytes) -> bytes:
    # Distinct numbers keep the compression ratio ordinary, like real content.
    return b"".join(template % (n * 7919 % 1000003) for n in range(count))


async def test_a_text_frame_of_a_hundred_thousand_paragraphs_is_cut_fast(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_pptx("tok", slides=1)
    slide = _member(data, "ppt/slides/slide1.xml")
    paragraphs = _numbers(100_000, b"<a:p><a:r><a:t>paragraph %d</a:t></a:r></a:p>")
    data = files.replace_member(
        data, "ppt/slides/slide1.xml", slide.replace(b"<a:p>", paragraphs + b"<a:p>", 1)
    )
    started = time.monotonic()
    out = await reader.read(FileKind.PPTX, data, "long.pptx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert out.text.endswith(
        f"[... truncated: more than {ExtractionLimits().max_chars} characters]"
    )


async def test_a_presentation_with_too_much_xml_is_refused() -> None:
    data = files.make_pptx("tok")
    with pytest.raises(PayloadTooLarge, match=r"'big\.pptx' holds more than 0 MB of XML"):
        await limited(max_parsed_xml_bytes=1000).read(FileKind.PPTX, data, "big.pptx")


def test_a_word_file_with_too_much_xml_is_streamed_to_the_same_text() -> None:
    data = files.make_docx("tok")
    bounded = ExtractionLimits(max_parsed_xml_bytes=1000)
    assert DocxTextExtractor(bounded).extract(data, "a.docx") == DocxTextExtractor().extract(
        data, "a.docx"
    )


async def test_one_word_paragraph_of_a_million_runs_is_cut_fast(
    reader: DocumentReaderByKind,
) -> None:
    data = files.make_docx("tok", paragraphs=1, table=False)
    body = _member(data, "word/document.xml")
    runs = _numbers(1_000_000, b"<w:r><w:t>%d </w:t></w:r>")
    data = files.replace_member(
        data, "word/document.xml", body.replace(b"<w:sectPr", b"<w:p>" + runs + b"</w:p><w:sectPr")
    )
    started = time.monotonic()
    out = await reader.read(FileKind.DOCX, data, "runs.docx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert out.truncated


def _with_styles(data: bytes, count: int) -> bytes:
    styles = _member(data, "xl/styles.xml")
    start, end = styles.index(b"<cellXfs"), styles.index(b"</cellXfs>")
    xfs = _numbers(count, b'<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="%d"/>')
    body = styles[:start] + b'<cellXfs count="%d">' % count + xfs + styles[end:]
    return files.replace_member(data, "xl/styles.xml", body)


async def test_a_stylesheet_too_large_to_parse_is_left_out() -> None:
    data = _with_styles(files.make_xlsx("tok", sheets=1, rows=1), 20_000)
    started = time.monotonic()
    out = await limited(max_parsed_part_bytes=100_000).read(FileKind.XLSX, data, "s.xlsx")
    assert time.monotonic() - started < HANG_GUARD_S
    assert "tok-0-0" in out.text


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ({"max_parsed_part_bytes": 100}, r"its part '.*' is larger than 0 MB"),
        ({"max_parsed_xml_bytes": 100}, "it holds more than 0 MB of XML"),
    ],
)
async def test_workbook_parts_too_large_to_parse_refuse_the_file(
    bounds: dict[str, int], why: str
) -> None:
    data = files.make_xlsx("tok")
    with pytest.raises(PayloadTooLarge, match=rf"'w\.xlsx' is too large to read: {why}"):
        await limited(**bounds).read(FileKind.XLSX, data, "w.xlsx")
