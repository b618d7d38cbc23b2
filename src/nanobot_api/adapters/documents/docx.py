"""Word text with python-docx: paragraphs, and tables as rows of tab-separated cells."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread

from nanobot_api.adapters.documents.zipguard import check_zip
from nanobot_api.domain.attachments import MIB, ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.filetypes import FileKind, unsupported

log = logging.getLogger(__name__)

MAIN_PART = "word/document.xml"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# How python-docx renders the inner content of a run (docx.oxml.text.run).
_RUN_TEXT = {f"{_W}tab": "\t", f"{_W}ptab": "\t", f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-"}


class DocxTextExtractor:
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

    def __init__(
        self,
        limits: ExtractionLimits | None = None,
        *,
        limiter: anyio.CapacityLimiter | None = None,
        stream_over: int = 4 * MIB,
    ) -> None:
        self._limits = limits or ExtractionLimits()
        self._limiter = limiter
        self._stream_over = stream_over

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        if kind is not FileKind.DOCX:
            raise unsupported(name, "not a Word document")
        return await anyio.to_thread.run_sync(
            self.extract, data, name, limiter=self._limiter, abandon_on_cancel=True
        )

    def extract(self, data: bytes, name: str) -> ExtractedText:
        """The blocking extraction, for a worker thread."""
        members = check_zip(data, name, self._limits)
        body_size = max((m.size for m in members if m.name == MAIN_PART), default=0)
        try:
            if body_size > self._stream_over:
                return self._stream(data)
            return self._extract(data)
        except NanobotError:
            raise
        except Exception as exc:
            # A hostile package can make python-docx, lxml or zipfile fail in any way;
            # each means only that the file is unreadable.
            log.info("python-docx failed on %r", name, exc_info=True)
            raise InvalidRequest(f"Could not read '{name}': not a valid Word document") from exc

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
            blocks = etree.iterparse(
                xml,
                events=("end",),
                tag=(f"{_W}p", f"{_W}tbl"),
                resolve_entities=False,
                no_network=True,
            )
            for _, block in blocks:
                body = block.getparent()
                if body is None or body.tag != f"{_W}body":
                    continue  # a paragraph in a table: read with its table
                if text.out_of_time():
                    break
                lines = _xml_rows(block) if block.tag == f"{_W}tbl" else [_xml_text(block)]
                if not all(text.add(line) for line in lines if line.strip()):
                    break
                # Forget what was read, so memory holds one block at a time.
                block.clear()
                while block.getprevious() is not None:
                    del body[0]
        return text.build()


def _xml_text(paragraph: Any) -> str:
    """A ``w:p``'s text as python-docx's ``Paragraph.text`` gives it."""
    parts: list[str] = []
    for run in paragraph.iterchildren(f"{_W}r", f"{_W}hyperlink"):
        runs = run.iterchildren(f"{_W}r") if run.tag == f"{_W}hyperlink" else [run]
        for r in runs:
            for child in r.iterchildren():
                if child.tag == f"{_W}t":
                    parts.append(child.text or "")
                elif child.tag == f"{_W}br":
                    kind = child.get(f"{_W}type", "textWrapping")
                    parts.append("\n" if kind == "textWrapping" else "")
                else:
                    parts.append(_RUN_TEXT.get(child.tag, ""))
    return "".join(parts)


def _xml_rows(table: Any) -> Iterator[str]:
    for row in table.iterchildren(f"{_W}tr"):
        cells = (
            "\n".join(_xml_text(p) for p in cell.iterchildren(f"{_W}p"))
            for cell in row.iterchildren(f"{_W}tc")
        )
        yield "\t".join(" ".join(cell.split()) for cell in cells)


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
