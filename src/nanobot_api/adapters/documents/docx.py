"""Word text with python-docx: paragraphs, and tables as rows of tab-separated cells."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import anyio
import anyio.to_thread

from nanobot_api.adapters.documents.base import ThreadedExtractor
from nanobot_api.adapters.documents.zipguard import check_zip, xml_size
from nanobot_api.domain.attachments import MIB, ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.filetypes import FileKind

MAIN_PART = "word/document.xml"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_BODY, _P, _R, _HYPERLINK = f"{_W}body", f"{_W}p", f"{_W}r", f"{_W}hyperlink"
_TBL, _TR, _TC = f"{_W}tbl", f"{_W}tr", f"{_W}tc"
# How python-docx renders the inner content of a run (docx.oxml.text.run).
_RUN_TEXT = {f"{_W}tab": "\t", f"{_W}ptab": "\t", f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-"}


class DocxTextExtractor(ThreadedExtractor):
    """A DocumentReader for DOCX: the body's paragraphs and tables in document order.

    The zip is checked against ``limits`` before python-docx opens it; the text is
    bounded by ``limits.max_chars`` and ``limits.time_budget_s`` (checked between
    paragraphs and tables). python-docx is imported on first use.

    python-docx parses the whole body into memory before the first paragraph (a
    10 MB file of prose is 55 MB of XML: 1.5 s and 300 MB), so a body larger than
    ``stream_over`` bytes is instead streamed with lxml (python-docx's own parser),
    keeping one paragraph or table in memory and stopping at the first bound. Both
    ways give the same text, but for vertically merged cells, which python-docx
    repeats down the rows and the stream shows once.
    """

    kind = FileKind.DOCX
    kind_label = "a Word document"
    valid_as = "Word document"
    parser = "python-docx"

    def __init__(
        self,
        limits: ExtractionLimits | None = None,
        *,
        limiter: anyio.CapacityLimiter | None = None,
        stream_over: int = 4 * MIB,
    ) -> None:
        super().__init__(limits, limiter=limiter)
        self._stream_over = stream_over

    def parse(self, data: bytes, name: str) -> ExtractedText:
        members = check_zip(data, name, self._limits)
        body_size = max((m.size for m in members if m.name == MAIN_PART), default=0)
        # python-docx parses every XML part it knows when it opens the file.
        whole = xml_size(members) <= self._limits.max_parsed_xml_bytes
        if body_size > self._stream_over or not whole:
            return self._stream(data)
        return self._extract(data)

    def _extract(self, data: bytes) -> ExtractedText:
        import docx
        from docx.table import Table

        text = TextBuilder.start(self._limits)
        document = docx.Document(io.BytesIO(data))
        for block in document.iter_inner_content():
            if text.out_of_time():
                break
            lines = _table_rows(block) if isinstance(block, Table) else iter([block.text])
            if not all(text.add(line) for line in lines if line.strip()):
                break
        return text.build()

    def _stream(self, data: bytes) -> ExtractedText:
        from lxml import etree  # type: ignore[import-untyped]

        text = TextBuilder.start(self._limits)
        with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(MAIN_PART) as xml:
            events = etree.iterparse(
                xml,
                events=("end",),
                tag=(_R, _P, _TR, _TBL),
                resolve_entities=False,
                no_network=True,
            )
            _read_body(events, text)
        return text.build()


def _read_body(events: Iterable[tuple[str, Any]], text: TextBuilder) -> None:
    """Reads the body's paragraphs run by run and its tables row by row, dropping each
    element once read, so memory holds one run or one table row, not the document."""
    pending: list[str] = []  # the text of the current body paragraph's runs so far
    size = 0
    for count, (_, element) in enumerate(events):
        if count % 1024 == 0 and text.out_of_time():
            return
        parent = element.getparent()
        if element.tag == _R:
            paragraph = _body_paragraph(element)
            if paragraph is None:
                continue  # in a table: read with its row
            if parent is paragraph or (
                parent.tag == _HYPERLINK and parent.getparent() is paragraph
            ):
                pending.append(_run_text(element))  # what python-docx counts
                size += len(pending[-1])
            parent.remove(element)
            if size > text.max_chars:
                text.add("".join(pending))  # the rest cannot fit
                return
        elif element.tag == _P and _is_body(parent):
            line, size = "".join(pending), 0
            pending.clear()
            if line.strip() and not text.add(line):
                return
            _forget(element)
        elif element.tag == _TR and parent is not None and _is_body(parent.getparent()):
            line = _xml_row(element)
            if line.strip() and not text.add(line):
                return
            parent.remove(element)
        elif element.tag == _TBL and _is_body(parent):
            _forget(element)


def _is_body(element: Any) -> bool:
    return element is not None and element.tag == _BODY


def _body_paragraph(run: Any) -> Any:
    """The paragraph of the body that holds ``run``, or None if it is elsewhere."""
    for ancestor in run.iterancestors(_P):
        return ancestor if _is_body(ancestor.getparent()) else None
    return None


def _forget(element: Any) -> None:
    element.clear()
    parent = element.getparent()
    while element.getprevious() is not None:
        del parent[0]


def _run_text(run: Any) -> str:
    """A ``w:r``'s text as python-docx renders it."""
    parts: list[str] = []
    for child in run.iterchildren():
        if child.tag == f"{_W}t":
            parts.append(child.text or "")
        elif child.tag == f"{_W}br":
            kind = child.get(f"{_W}type", "textWrapping")
            parts.append("\n" if kind == "textWrapping" else "")
        else:
            parts.append(_RUN_TEXT.get(child.tag, ""))
    return "".join(parts)


def _xml_text(paragraph: Any) -> str:
    """A ``w:p``'s text as python-docx's ``Paragraph.text`` gives it."""
    return "".join(
        _run_text(r)
        for child in paragraph.iterchildren(_R, _HYPERLINK)
        for r in (child.iterchildren(_R) if child.tag == _HYPERLINK else [child])
    )


def _xml_row(row: Any) -> str:
    cells = (
        "\n".join(_xml_text(p) for p in cell.iterchildren(_P)) for cell in row.iterchildren(_TC)
    )
    return "\t".join(" ".join(cell.split()) for cell in cells)


def _table_rows(table: Any) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # A merged cell is repeated once per grid column it spans; show it once.
            if cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        yield "\t".join(cells)
