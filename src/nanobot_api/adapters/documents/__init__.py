"""Document readers: one per format, each running its library off the event loop.

The libraries (pypdf, python-docx, openpyxl, python-pptx) are imported only when a
document of their kind is first read, so importing nanobot_api stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from nanobot_api.adapters.documents.docx import DocxTextExtractor
from nanobot_api.adapters.documents.pdf import PypdfTextExtractor
from nanobot_api.adapters.documents.pptx import PptxTextExtractor
from nanobot_api.adapters.documents.xlsx import OpenpyxlTextExtractor
from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits
from nanobot_api.domain.filetypes import FileKind, unsupported
from nanobot_api.domain.ports import DocumentReader

__all__ = [
    "DocumentReaderByKind",
    "DocxTextExtractor",
    "OpenpyxlTextExtractor",
    "PptxTextExtractor",
    "PypdfTextExtractor",
]


class DocumentReaderByKind:
    """A DocumentReader that hands each document to the reader of its kind.

    A kind with no reader is refused with UnsupportedMediaType naming the file.
    """

    def __init__(self, readers: Mapping[FileKind, DocumentReader]) -> None:
        self._readers = dict(readers)

    @classmethod
    def standard(
        cls, limits: ExtractionLimits | None = None, *, max_concurrent: int = 2
    ) -> DocumentReaderByKind:
        """The four library readers sharing ``limits``, at most ``max_concurrent``
        extractions at a time (each may hold a document's inflated parts in memory)."""
        limiter = anyio.CapacityLimiter(max_concurrent)
        return cls(
            {
                FileKind.PDF: PypdfTextExtractor(limits, limiter=limiter),
                FileKind.DOCX: DocxTextExtractor(limits, limiter=limiter),
                FileKind.XLSX: OpenpyxlTextExtractor(limits, limiter=limiter),
                FileKind.PPTX: PptxTextExtractor(limits, limiter=limiter),
            }
        )

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        reader = self._readers.get(kind)
        if reader is None:
            raise unsupported(name, "no reader for this kind of document")
        return await reader.read(kind, data, name)
