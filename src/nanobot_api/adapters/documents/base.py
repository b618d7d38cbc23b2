"""What every document extractor shares: its limits, reading off the event loop, and
turning whatever its parser raises on a bad file into one InvalidRequest (logged)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar

import anyio
import anyio.to_thread

from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.filetypes import FileKind, unsupported

log = logging.getLogger(__name__)


class ThreadedExtractor(ABC):
    """A DocumentReader for one kind whose blocking ``extract`` runs in a worker thread.

    ``limiter`` bounds how many extractions run at once (each may hold a document's
    inflated parts in memory). A cancelled read abandons its thread, which stops at
    its next time-budget check.
    """

    kind: ClassVar[FileKind]
    kind_label: ClassVar[str]  # "a PDF": what a file of another kind is not
    valid_as: ClassVar[str]  # "PDF": what an unreadable file is not a valid one of
    parser: ClassVar[str]  # the library, for the log line of a file it failed on

    def __init__(
        self,
        limits: ExtractionLimits | None = None,
        *,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._limits = limits or ExtractionLimits()
        self._limiter = limiter

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        if kind is not self.kind:
            raise unsupported(name, f"not {self.kind_label}")
        return await anyio.to_thread.run_sync(
            self.extract, data, name, limiter=self._limiter, abandon_on_cancel=True
        )

    def extract(self, data: bytes, name: str) -> ExtractedText:
        """The blocking extraction, for a worker thread: the text, or a domain error."""
        try:
            return self.parse(data, name)
        except NanobotError:
            raise
        except Exception as exc:
            # A hostile file can make a parser, its XML reader or zipfile fail in any
            # way (KeyError, RecursionError, zlib.error, ...); each means only that
            # the file is unreadable.
            log.info("%s failed on %r", self.parser, name, exc_info=True)
            raise InvalidRequest(f"Could not read '{name}': not a valid {self.valid_as}") from exc

    @abstractmethod
    def parse(self, data: bytes, name: str) -> ExtractedText:
        """The extraction itself; any exception other than a domain error means the
        file is unreadable."""
