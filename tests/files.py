"""Real files made on the spot, each carrying a token that must reach the agent.

Shared by the unit, HTTP and acceptance tests (``from tests.files import make_docx``)
and by bench/uploads.py. Images carry the token in their metadata, documents in
their text. The hostile ones (zip bombs, huge PDFs, executables) are here too.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

MIB = 1024 * 1024

# ---------------------------------------------------------------------------
# Images (Pillow)


def _image(size: tuple[int, int] = (8, 8)) -> Image.Image:
    from PIL import Image

    return Image.new("RGB", size, (200, 30, 30))


def make_png(token: str, size: tuple[int, int] = (8, 8)) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("token", token)
    buf = io.BytesIO()
    _image(size=size).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def make_jpeg(token: str) -> bytes:
    buf = io.BytesIO()
    _image().save(buf, "JPEG", comment=token.encode())
    return buf.getvalue()


def make_gif(token: str) -> bytes:
    buf = io.BytesIO()
    _image().save(buf, "GIF", comment=token.encode())
    return buf.getvalue()


def make_webp(token: str) -> bytes:
    buf = io.BytesIO()
    _image().save(buf, "WEBP", xmp=f"<x>{token}</x>".encode())
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Documents


def make_docx(token: str, *, paragraphs: int = 3, table: bool = True) -> bytes:
    """A Word file: paragraphs naming ``token``, then a 2x3 table whose last cell is it."""
    import docx

    document = docx.Document()
    document.add_heading(f"Report {token}", level=1)
    for n in range(paragraphs):
        document.add_paragraph(f"Paragraph {n} mentions {token}.")
    if table:
        grid = document.add_table(rows=2, cols=3)
        for r, row in enumerate(grid.rows):
            for c, cell in enumerate(row.cells):
                cell.text = f"r{r}c{c}"
        grid.rows[1].cells[2].text = f"cell-{token}"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_xlsx(token: str, *, sheets: int = 2, rows: int = 5) -> bytes:
    """A workbook of ``sheets`` sheets ("Data", "Sheet2", ...) with ``rows`` rows each."""
    import openpyxl

    workbook = openpyxl.Workbook()
    for s in range(sheets):
        sheet = workbook.active if s == 0 else workbook.create_sheet()
        sheet.title = "Data" if s == 0 else f"Sheet{s + 1}"
        sheet.append(["name", "value", "note"])
        for r in range(rows):
            sheet.append([f"row{r}", r * 1.5, f"{token}-{s}-{r}"])
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()


def make_pptx(token: str, *, slides: int = 2) -> bytes:
    """A presentation whose slides have a title, a body line and (slide 1) a table."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    layout = deck.slide_layouts[1]
    for n in range(slides):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = f"Slide title {n + 1}"
        slide.placeholders[1].text = f"Body {token} {n + 1}"
        if n == 0:
            shape = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1))
            shape.table.cell(1, 1).text = f"tcell-{token}"
            slide.notes_slide.notes_text_frame.text = f"notes-{token}"
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def make_pdf(token: str, *, pages: int = 1, lines_per_page: int = 1) -> bytes:
    """A hand-written PDF (uncompressed, Helvetica) with ``token`` on every page."""
    objects: list[bytes] = [b"", b""]  # catalog and page tree, filled in below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids: list[int] = []
    for n in range(pages):
        ops = [b"BT /F1 10 Tf 12 TL 50 760 Td"]
        for line in range(lines_per_page):
            ops.append(f"(page {n + 1} line {line} {token}) '".encode())
        ops.append(b"ET")
        content = b"\n".join(ops)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % content_id
        )
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    refs = b" ".join(b"%d 0 R" % k for k in kids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, pages)
    return pdf_file(objects)


def pdf_file(objects: Sequence[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_text(token: str) -> bytes:
    return f"# Notes\n\ntoken: {token}\nünïcödé ✓\n".encode()


# ---------------------------------------------------------------------------
# Hostile files

ELF_HEADER = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
PE_HEADER = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"PE\0\0"


def make_elf() -> bytes:
    return ELF_HEADER + b"\x00" * 200


def make_pe() -> bytes:
    return PE_HEADER + b"\x00" * 200


_OFFICE_MAIN = {
    "docx": "word/document.xml",
    "xlsx": "xl/workbook.xml",
    "pptx": "ppt/presentation.xml",
}
_CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns='
    b'"http://schemas.openxmlformats.org/package/2006/content-types"/>'
)


def _deflated_zeros(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros and its CRC, built fast.

    After a full flush the compressor's output for the same 1 MiB input repeats,
    so one block is compressed and then copied.
    """
    chunk = b"\0" * MIB
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    repeat = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return first + repeat * (mib - 1) + tail, crc


def make_zip_bomb(kind: str = "docx", *, inflated_mib: int = 256) -> bytes:
    """A genuine deflate bomb disguised as an Office file: its main part inflates to
    ``inflated_mib`` MiB of zeros (ratio about 1000x)."""
    stream, crc = _deflated_zeros(inflated_mib)
    members = [
        ("[Content_Types].xml", _CONTENT_TYPES, zlib.crc32(_CONTENT_TYPES), len(_CONTENT_TYPES), 0),
        (_OFFICE_MAIN[kind], stream, crc, inflated_mib * MIB, 8),
    ]
    return _zip(members)


def make_overlap_bomb(kind: str = "docx", *, copies: int = 400, inflated_mib: int = 1) -> bytes:
    """A zip whose directory lists ``copies`` members that all point at the same
    compressed data (the overlapping-entries bomb): each looks modest, all together
    inflate to ``copies * inflated_mib`` MiB."""
    stream, crc = _deflated_zeros(inflated_mib)
    size = inflated_mib * MIB
    names = ["[Content_Types].xml", _OFFICE_MAIN[kind]] + [
        f"{_OFFICE_MAIN[kind].split('/')[0]}/part{n}.xml" for n in range(copies - 2)
    ]
    local = _local_header(names[1], crc, len(stream), size, 8) + stream
    central = b"".join(_central_header(n, crc, len(stream), size, 8, offset=0) for n in names)
    return local + central + _end_record(len(names), len(central), len(local))


def make_many_members_zip(kind: str = "xlsx", *, members: int = 20_000) -> bytes:
    """An Office-looking zip listing ``members`` tiny members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr(_OFFICE_MAIN[kind], b"<x/>")
        for n in range(members - 2):
            archive.writestr(f"m{n}", b"")
    return buf.getvalue()


def replace_member(package: bytes, member: str, body: bytes) -> bytes:
    """``package`` (a zip) with ``member`` holding ``body`` instead."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(package)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, body if info.filename == member else src.read(info))
    return out.getvalue()


def corrupt(data: bytes) -> bytes:
    """``data`` with its middle overwritten: the magic number survives, the rest not."""
    middle = len(data) // 2
    return data[:middle] + b"\xde\xad\xbe\xef" * 64 + data[middle + 256 :]


# ---------------------------------------------------------------------------
# Zip records, by hand, for archives zipfile refuses to write


def _zip(members: Sequence[tuple[str, bytes, int, int, int]]) -> bytes:
    out = bytearray()
    central = bytearray()
    for name, payload, crc, size, method in members:
        offset = len(out)
        out += _local_header(name, crc, len(payload), size, method) + payload
        central += _central_header(name, crc, len(payload), size, method, offset=offset)
    return bytes(out + central + _end_record(len(members), len(central), len(out)))


def _local_header(name: str, crc: int, csize: int, size: int, method: int) -> bytes:
    raw = name.encode()
    return (
        struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, csize, size, len(raw), 0)
        + raw
    )


def _central_header(
    name: str, crc: int, csize: int, size: int, method: int, *, offset: int
) -> bytes:
    raw = name.encode()
    return (
        struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0,
            crc,
            csize,
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        + raw
    )


def _end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


# ---------------------------------------------------------------------------
# multipart/form-data bodies, as curl -F sends them

BOUNDARY = "------------------------nanobotTestBoundary7MA4YWxk"


def encode_multipart(
    fields: dict[str, str] | None = None,
    files: Sequence[tuple[str, str, bytes, str]] = (),
    boundary: str = BOUNDARY,
) -> tuple[bytes, str]:
    """A body and its Content-Type; ``files`` holds (field, filename, data, mime)."""
    out = bytearray()
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for field, filename, data, mime in files:
        out += (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{field}"; filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def make_shared_strings_xlsx(token: str, *, padding: int = 0, cite_last: bool = False) -> bytes:
    """A workbook whose text lives in a shared-string table, as Excel writes it.

    A1 is a plain string with ``token``, B1 rich text with a phonetic hint (which
    readers leave out). ``padding`` more strings follow in the table; with
    ``cite_last`` the cell A2 uses the very last one.
    """
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.append(["placeholder"])
    buf = io.BytesIO()
    workbook.save(buf)
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    strings = [
        f"<si><t>hello {token}</t></si>",
        '<si><r><t xml:space="preserve">rich </t></r><r><rPr><b/></rPr><t>text</t></r>'
        '<rPh sb="0" eb="4"><t>hint</t></rPh></si>',
        *(f"<si><t>padding string {n}</t></si>" for n in range(padding)),
    ]
    table = (
        f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{main}" '
        f'count="{len(strings)}" uniqueCount="{len(strings)}">{"".join(strings)}</sst>'
    ).encode()
    cells = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
    if cite_last:
        cells += f'<row r="2"><c r="A2" t="s"><v>{len(strings) - 1}</v></c></row>'
    out = io.BytesIO()
    with (
        zipfile.ZipFile(buf) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "[Content_Types].xml":
                body = body.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            elif info.filename == "xl/_rels/workbook.xml.rels":
                body = body.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdS" Target="sharedStrings.xml" Type="http://schemas.'
                    b'openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/>'
                    b"</Relationships>",
                )
            elif info.filename == "xl/worksheets/sheet1.xml":
                start, end = body.index(b"<sheetData>"), body.index(b"</sheetData>")
                body = body[: start + 11] + cells.encode() + body[end:]
            dst.writestr(info.filename, body)
        dst.writestr("xl/sharedStrings.xml", table)
    return out.getvalue()
