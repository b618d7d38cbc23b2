"""Excel text with openpyxl: ``## Sheet: name``, then rows of tab-separated cells."""

from __future__ import annotations

import datetime as dt
import io
import logging

import anyio
import anyio.to_thread

from nanobot_api.adapters.documents.zipguard import check_zip
from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.filetypes import FileKind, unsupported

log = logging.getLogger(__name__)

_TIME_CHECK_EVERY = 256  # rows; a clock read per row would dominate small rows


class OpenpyxlTextExtractor:
    """A DocumentReader for XLSX: each worksheet's non-empty rows, values as last saved.

    The zip is checked against ``limits`` before openpyxl opens it, which it does in
    read-only mode (rows are streamed, not loaded). At most ``limits.max_sheets``
    sheets, ``limits.max_rows`` non-empty rows and ``limits.max_cells`` cells in all,
    within ``limits.max_chars`` and ``limits.time_budget_s``. openpyxl is imported on
    first use.
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
        if kind is not FileKind.XLSX:
            raise unsupported(name, "not an Excel workbook")
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
            # A hostile package can make openpyxl, its XML parser or zipfile fail in
            # any way; each means only that the file is unreadable.
            log.info("openpyxl failed on %r", name, exc_info=True)
            raise InvalidRequest(f"Could not read '{name}': not a valid Excel workbook") from exc

    def _extract(self, data: bytes) -> ExtractedText:
        import openpyxl

        limits = self._limits
        text = TextBuilder.start(limits)
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            sheets = workbook.worksheets
            rows = cells = 0
            for index, sheet in enumerate(sheets):
                if index >= limits.max_sheets:
                    text.stop(f"only the first {limits.max_sheets} of {len(sheets)} sheets")
                if text.out_of_time() or not text.add(f"## Sheet: {sheet.title}"):
                    break
                # A declared dimension (say A1:XFD1048576) would make openpyxl pad every
                # row to it and invent every missing row; read only the rows present.
                sheet.reset_dimensions()
                for seen, row in enumerate(sheet.iter_rows(values_only=True)):
                    if seen % _TIME_CHECK_EVERY == 0 and text.out_of_time():
                        break
                    values = [_cell_text(v) for v in row]
                    while values and not values[-1]:
                        values.pop()
                    if not values:
                        continue
                    rows += 1
                    cells += len(values)
                    if rows > limits.max_rows:
                        text.stop(f"more than {limits.max_rows} rows")
                    elif cells > limits.max_cells:
                        text.stop(f"more than {limits.max_cells} cells")
                    if not text.add("\t".join(values)):
                        break
        finally:
            workbook.close()
        return text.build()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    # Tabs and line breaks inside a cell would break the row structure.
    return " ".join(str(value).split())
