"""PDF text, page by page, with pypdf."""

from __future__ import annotations

import io
import logging

import anyio
import anyio.to_thread

from nanobot_api.domain.attachments import MIB, ExtractedText, ExtractionLimits, TextBuilder
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.filetypes import FileKind, unsupported

log = logging.getLogger(__name__)

# A page's text never needs the 75 MB per decoded stream pypdf allows by default.
_STREAM_BOUND = 32 * MIB


class PypdfTextExtractor:
    """A DocumentReader for PDF: ``--- Page N ---`` before each page's text.

    Reads at most ``limits.max_pages`` pages and ``limits.max_chars`` characters
    within ``limits.time_budget_s`` (checked between pages); past a bound the text
    ends with a truncation marker. pypdf is imported on first use.
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
        if kind is not FileKind.PDF:
            raise unsupported(name, "not a PDF")
        return await anyio.to_thread.run_sync(
            self.extract, data, name, limiter=self._limiter, abandon_on_cancel=True
        )

    def extract(self, data: bytes, name: str) -> ExtractedText:
        """The blocking extraction, for a worker thread."""
        import pypdf
        from pypdf.errors import PyPdfError

        try:
            # A context variable: this thread's configuration only.
            with pypdf.apply_configuration(
                maximum_declared_stream_length=_STREAM_BOUND,
                zlib_maximum_output_length=_STREAM_BOUND,
                lzw_maximum_output_length=_STREAM_BOUND,
                run_length_maximum_output_length=_STREAM_BOUND,
                array_based_stream_maximum_output_length=_STREAM_BOUND,
                stream_decoding_work_maximum_length=2 * _STREAM_BOUND,
                # Never run an external decoder on a client's file.
                jbig2dec_binary=None,
                disable_legacy_handling=True,
            ):
                return self._extract(data, name)
        except NanobotError:
            raise
        except PyPdfError as exc:
            raise InvalidRequest(f"Could not read '{name}': {str(exc)[:200]}") from exc
        except Exception as exc:
            # A hostile file can make a parser fail in any way (KeyError, TypeError,
            # RecursionError, zlib.error, ...); each means only that it is unreadable.
            log.info("pypdf failed on %r", name, exc_info=True)
            raise InvalidRequest(f"Could not read '{name}': not a valid PDF") from exc

    def _extract(self, data: bytes, name: str) -> ExtractedText:
        from pypdf import PdfReader

        limits = self._limits
        text = TextBuilder.start(limits)
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest(f"Could not read '{name}': it is password-protected")
        pages = reader.pages
        count = len(pages)
        for index in range(min(count, limits.max_pages)):
            if text.out_of_time() or not text.add(f"--- Page {index + 1} ---"):
                break
            page_text = pages[index].extract_text().strip()
            if page_text and not text.add(page_text):
                break
        if count > limits.max_pages:
            text.stop(f"only the first {limits.max_pages} of {count} pages")
        return text.build()
