"""Excel text with openpyxl: ``## Sheet: name``, then rows of tab-separated cells."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Sequence
from typing import IO, Any

from nanobot_api.adapters.documents.base import ThreadedExtractor
from nanobot_api.adapters.documents.zipguard import check_zip
from nanobot_api.domain.attachments import MIB, ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.errors import PayloadTooLarge
from nanobot_api.domain.filetypes import FileKind

_TIME_CHECK_EVERY = 256  # rows; a clock read per row would dominate small rows


class OpenpyxlTextExtractor(ThreadedExtractor):
    """A DocumentReader for XLSX: each worksheet's non-empty rows, values as last saved.

    The zip is checked against ``limits`` before openpyxl opens it, which it does in
    read-only mode (rows are streamed, not loaded). At most ``limits.max_sheets``
    sheets, ``limits.max_rows`` non-empty rows and ``limits.max_cells`` cells in all,
    within ``limits.max_chars`` and ``limits.time_budget_s``. openpyxl is imported on
    first use.
    """

    kind = FileKind.XLSX
    kind_label = "an Excel workbook"
    valid_as = "Excel workbook"
    parser = "openpyxl"

    def parse(self, data: bytes, name: str) -> ExtractedText:
        check_zip(data, name, self._limits)
        try:
            return self._extract(data)
        except _TooLarge as exc:
            raise PayloadTooLarge(f"File '{name}' is too large to read: {exc}") from exc

    def _extract(self, data: bytes) -> ExtractedText:
        limits = self._limits
        text = TextBuilder.start(limits)
        workbook = _open_workbook(data, text, limits)
        try:
            sheets = workbook.worksheets
            counts = [0, 0]  # non-empty rows and cells read so far, over all sheets
            for index, sheet in enumerate(sheets):
                if index >= limits.max_sheets:
                    text.stop(f"only the first {limits.max_sheets} of {len(sheets)} sheets")
                if text.out_of_time() or not text.add(f"## Sheet: {sheet.title}"):
                    break
                # A declared dimension (say A1:XFD1048576) would make openpyxl pad every
                # row to it and invent every missing row; read only the rows present.
                sheet.reset_dimensions()
                try:
                    self._read_rows(sheet.iter_rows(values_only=True), text, counts)
                except _OutOfTime:
                    text.stop("time budget spent")
        finally:
            workbook.close()
        return text.build()

    def _read_rows(
        self, rows: Iterable[Sequence[object]], text: TextBuilder, counts: list[int]
    ) -> None:
        limits = self._limits
        for seen, row in enumerate(rows):
            if seen % _TIME_CHECK_EVERY == 0 and text.out_of_time():
                return
            values = [_cell_text(v) for v in row]
            while values and not values[-1]:
                values.pop()
            if not values:
                continue
            counts[0] += 1
            counts[1] += len(values)
            if counts[0] > limits.max_rows:
                text.stop(f"more than {limits.max_rows} rows")
            elif counts[1] > limits.max_cells:
                text.stop(f"more than {limits.max_cells} cells")
            if not text.add("\t".join(values)):
                return


def _open_workbook(data: bytes, text: TextBuilder, limits: ExtractionLimits) -> Any:
    """openpyxl's read-only workbook, with what it would read whole kept in bounds.

    Worksheets are streamed by openpyxl itself. The shared-string table, which it
    reads whole before the first row at about 7 us a string (a 4 MB file can list
    1.5 million: 11 s), is parsed on demand here, and the time budget can stop it.
    The parts it parses whole (workbook, styles, themes) go through _BoundedArchive.
    """
    from openpyxl.reader.excel import SHARED_STRINGS, ExcelReader

    class _Reader(ExcelReader):  # type: ignore[misc]
        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                source = self.archive.open(part.PartName[1:])
                self.shared_strings = _SharedStrings(source, text)

    reader = _Reader(io.BytesIO(data), read_only=True, data_only=True)
    reader.archive = _BoundedArchive(io.BytesIO(data), limits)
    reader.read()
    return reader.wb


_STYLES = "xl/styles.xml"


class _BoundedArchive(zipfile.ZipFile):
    """The workbook's zip, refusing to hand openpyxl a part too large to parse whole.

    openpyxl turns a stylesheet into objects at about 0.4 s a megabyte (a 1 MB file
    can hold 23 MB of styles: 10 s). A stylesheet over the part bound is left out
    (openpyxl then uses its defaults: dates show as serial numbers); any other part
    over it, or all of them over ``max_parsed_xml_bytes``, refuses the file.
    """

    def __init__(self, file: IO[bytes], limits: ExtractionLimits) -> None:
        super().__init__(file)
        self._limits = limits
        self._parsed = 0

    def read(self, name: str | zipfile.ZipInfo, pwd: bytes | None = None) -> bytes:
        info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
        limits = self._limits
        if info.file_size > limits.max_parsed_part_bytes:
            if info.filename == _STYLES:
                raise KeyError(info.filename)  # openpyxl reads this as "no stylesheet"
            raise _TooLarge(
                f"its part '{info.filename}' is larger than "
                f"{limits.max_parsed_part_bytes // MIB} MB"
            )
        self._parsed += info.file_size
        if self._parsed > limits.max_parsed_xml_bytes:
            raise _TooLarge(f"it holds more than {limits.max_parsed_xml_bytes // MIB} MB of XML")
        return super().read(info, pwd)


class _TooLarge(Exception):
    """A part the workbook would parse whole is over its bound."""


class _OutOfTime(Exception):
    """The time budget ran out while reading the shared-string table."""


class _SharedStrings:
    """The shared-string table as a list openpyxl indexes, parsed as far as needed.

    Gives the text openpyxl's own reader gives: a string's ``t`` and its rich-text
    runs' ``t``, not its phonetic hints (``rPh``), with ``x005F_`` escapes removed.
    """

    def __init__(self, source: IO[bytes], text: TextBuilder) -> None:
        import xml.parsers.expat

        self._source = source
        self._text = text
        self._strings: list[str] = []
        self._parts: list[str] = []
        self._in_t = self._in_phonetic = 0
        self._ended = False
        parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        self._parser = parser

    def __getitem__(self, index: int) -> str:
        while index >= len(self._strings) and not self._ended:
            if self._text.out_of_time():
                raise _OutOfTime
            chunk = self._source.read(64 * 1024)
            self._ended = not chunk
            self._parser.Parse(chunk, self._ended)
        return self._strings[index]

    def _start(self, name: str, _attributes: object) -> None:
        local = name.rpartition(" ")[2]
        if local == "t":
            self._in_t += 1
        elif local == "rPh":
            self._in_phonetic += 1
        elif local == "si":
            self._parts.clear()

    def _end(self, name: str) -> None:
        local = name.rpartition(" ")[2]
        if local == "t":
            self._in_t -= 1
        elif local == "rPh":
            self._in_phonetic -= 1
        elif local == "si":
            self._strings.append("".join(self._parts).replace("x005F_", ""))

    def _chars(self, data: str) -> None:
        if self._in_t and not self._in_phonetic:
            self._parts.append(data)


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
