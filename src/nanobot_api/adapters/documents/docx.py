"""Word text with python-docx: paragraphs, and tables as rows of tab-separated cells."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread

from nanobot_api.adapters.documents.zipguard import check_zip
from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.filetypes import FileKind, unsupported

log = logging.getLogger(__name__)


class DocxTextExtractor:
    """A DocumentReader for DOCX: the body's paragraphs and tables in document order.

    The zip is checked against ``limits`` before python-docx opens it; the text is
    bounded by ``limits.max_chars`` and ``limits.time_budget_s`` (checked between
    paragraphs and table rows). python-docx is imported on first use.
    """

    def __init__(
        self,
        limits: ExtractionLimits | None = None,
        *,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._limits = limits or ExtractionLimits()
        self._limiter = limiter

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        if kind is not FileKind.DOCX:
            raise unsupported(name, "not a Word document")
        return await anyio.to_thread.run_sync(
            self.extract, data, name, limiter=self._limiter, abandon_on_cancel=True
        )

    def extract(self, data: bytes, name: str) -> ExtractedText:
        """The blocking extraction, for a worker thread."""
        check_zip(data, name, self._limits)
        try:
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
