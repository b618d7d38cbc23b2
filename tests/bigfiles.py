"""Large files of ordinary content (about ``target`` bytes on disk), for benchmarks
and the slow tests: prose in Word, numbers and text in Excel, pages of text in PDF."""

from __future__ import annotations

import io
import itertools
import zipfile
import zlib
from collections.abc import Iterator

from tests.files import MIB, make_docx, make_pdf, make_shared_strings_xlsx, replace_member

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "revenue",
    "margin",
    "quarter",
    "forecast",
    "budget",
    "audit",
    "ledger",
    "invoice",
    "customer",
    "supplier",
)


def _sentences(seed: int) -> Iterator[str]:
    """Endless prose; a pool larger than deflate's 32 KB window keeps it realistic."""
    import random

    rng = random.Random(seed)
    pool = [" ".join(rng.choices(_WORDS, k=rng.randint(8, 20))).capitalize() for _ in range(4096)]
    for n in itertools.count():
        yield f"{pool[n % 4096]} {n * 7919 % 1000003}."


def _grow(parts: Iterator[bytes], target_compressed: int) -> bytes:
    """Joins ``parts`` until they would deflate to about ``target_compressed`` bytes.

    The ratio is measured on the first megabyte or so and extrapolated, so the
    whole is compressed only once, by the zip writer.
    """
    comp = zlib.compressobj(6)
    chunks: list[bytes] = []
    raw = compressed = 0
    while compressed < min(MIB, target_compressed):
        batch = b"".join(itertools.islice(parts, 2000))
        if not batch:
            return b"".join(chunks)
        chunks.append(batch)
        raw += len(batch)
        compressed += len(comp.compress(batch))
    wanted = target_compressed * raw // max(compressed, 1)
    while raw < wanted:
        batch = b"".join(itertools.islice(parts, 2000))
        if not batch:
            break
        chunks.append(batch)
        raw += len(batch)
    return b"".join(chunks)


def make_big_docx(token: str, target: int = 10 * MIB) -> bytes:
    """A Word file of about ``target`` bytes of ordinary prose; ``token`` opens it."""
    base = make_docx(token, paragraphs=1, table=False)
    with zipfile.ZipFile(io.BytesIO(base)) as src:
        xml = src.read("word/document.xml")
    head, _, tail = xml.partition(b"<w:sectPr")
    paragraphs = (f"<w:p><w:r><w:t>{s}</w:t></w:r></w:p>".encode() for s in _sentences(1))
    body = _grow(paragraphs, target - len(base))
    return replace_member(base, "word/document.xml", head + body + b"<w:sectPr" + tail)


def make_big_xlsx(token: str, target: int = 10 * MIB) -> bytes:
    """A workbook of about ``target`` bytes as Excel writes one: a sheet of numbers and
    text, the text in a shared-string table of one string per row."""
    base = make_shared_strings_xlsx(token)
    with zipfile.ZipFile(io.BytesIO(base)) as src:
        sheet = src.read("xl/worksheets/sheet1.xml")
        table = src.read("xl/sharedStrings.xml")
    sheet_head, _, sheet_tail = sheet.partition(b"</sheetData>")
    table_head, _, _ = table.partition(b"<si>")
    strings: list[bytes] = []

    def rows() -> Iterator[bytes]:
        sentences = _sentences(2)
        for r in range(3, 1_048_576):
            strings.append(f"<si><t>{next(sentences)}</t></si>".encode())
            yield (
                f'<row r="{r}"><c r="A{r}"><v>{r * 7 % 1000003}</v></c>'
                f'<c r="B{r}"><v>{r / 7:.6f}</v></c>'
                f'<c r="C{r}" t="s"><v>{len(strings) + 1}</v></c></row>'
            ).encode() + strings[-1]  # both parts count towards the size

    _grow(rows(), target - len(base))
    head = b"<si><t>hello %s</t></si><si><t>rich text</t></si>" % token.encode()
    body = b"".join(
        b'<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d"><v>%.6f</v></c>'
        b'<c r="C%d" t="s"><v>%d</v></c></row>' % (r, r, r * 7 % 1000003, r, r / 7, r, n + 2)
        for n, r in enumerate(range(3, 3 + len(strings)))
    )
    with_rows = replace_member(
        base, "xl/worksheets/sheet1.xml", sheet_head + body + b"</sheetData>" + sheet_tail
    )
    return replace_member(
        with_rows, "xl/sharedStrings.xml", table_head + head + b"".join(strings) + b"</sst>"
    )


def make_big_pdf(token: str, target: int = 10 * MIB) -> bytes:
    """A PDF of about ``target`` bytes: pages of 60 lines of prose each."""
    per_page = len(make_pdf(token, pages=2, lines_per_page=60)) // 2
    return make_pdf(token, pages=max(1, target // per_page), lines_per_page=60)
