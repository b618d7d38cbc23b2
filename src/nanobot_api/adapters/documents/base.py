"""What every document extractor shares: its limits, and reading off the event loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import anyio
import anyio.to_thread

from nanobot_api.domain.attachments import ExtractedText, ExtractionLimits
from nanobot_api.domain.filetypes import FileKind, unsupported


class ThreadedExtractor(ABC):
    """A DocumentReader for one kind whose blocking ``extract`` runs in a worker thread.

    ``limiter`` bounds how many extractions run at once (each may hold a document's
    inflated parts in memory). A cancelled read abandons its thread, which stops at
    its next time-budget check.
    """

    kind: ClassVar[FileKind]
    kind_label: ClassVar[str]

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

    @abstractmethod
    def extract(self, data: bytes, name: str) -> ExtractedText:
        """The blocking extraction, for a worker thread."""
