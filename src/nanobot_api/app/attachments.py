"""From the files a client sent to what the agent receives: images, and documents as text."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import attrs

from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.domain.attachments import (
    Document,
    ExtractedText,
    ExtractionLimits,
    Image,
    Upload,
    UploadLimits,
    check_file_count,
    check_file_size,
    decode_text,
)
from nanobot_api.domain.filetypes import FileKind, detect_kind
from nanobot_api.domain.ports import (
    DocumentReader,
    MediaStore,
    Telemetry,
    TracksRunningSessions,
)
from nanobot_api.domain.sessions import SessionKey


@attrs.frozen
class _Checked:
    upload: Upload
    kind: FileKind


class AttachmentIntake:
    """The ``Attachments`` port: checks, converts and stores a request's uploads.

    All or nothing, in three passes so that a refused request leaves no file behind
    and costs as little as possible: first every file's size and kind (cheap, from
    the bytes), then every document's text, and only then does anything reach the
    media store. The first file refused names the error.
    """

    def __init__(
        self,
        readers: DocumentReader,
        media: MediaStore,
        limits: UploadLimits,
        *,
        extraction: ExtractionLimits | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._readers = readers
        self._media = media
        # Decided once, not per turn (an isinstance of a runtime Protocol checks each
        # of its methods).
        self._tracks = media if isinstance(media, TracksRunningSessions) else None
        self._limits = limits
        self._extraction = extraction or ExtractionLimits()

    async def accept(
        self, uploads: Sequence[Upload], session: SessionKey | None = None
    ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
        """Raises PayloadTooLarge (too many files, a file over the size limit, a zip
        bomb), UnsupportedMediaType (bytes of no supported kind) or InvalidRequest (an
        empty, corrupt or unreadable file), each naming the file."""
        check_file_count(len(uploads), self._limits)
        checked = [self._check(upload) for upload in uploads]
        texts = [await self._text(item) for item in checked]
        images: list[Image] = []
        documents: list[Document] = []
        for item, text in zip(checked, texts, strict=True):
            upload, kind = item.upload, item.kind
            self._telemetry.upload_accepted(kind.name.lower())
            path = await self._media.save(upload.data, kind, upload.filename, session)
            if text is None:
                images.append(Image(upload.data, kind.mime, path, upload.filename))
            else:
                documents.append(Document(upload.label, text.text, path, text.truncated))
        return tuple(images), tuple(documents)

    def session_running(self, session: SessionKey) -> AbstractContextManager[None]:
        """Tells the media store (if it cares) that ``session`` has a turn running."""
        if self._tracks is not None:
            return self._tracks.session_running(session)
        return nullcontext()

    async def turn_ended(
        self, images: Sequence[Image], documents: Sequence[Document], *, kept: bool
    ) -> None:
        """A failed turn's files are removed from the media store; a kept turn's stay."""
        paths = [image.path for image in images] + [document.path for document in documents]
        if kept:
            await self._media.release(paths)
        else:
            await self._media.discard(paths)

    def _check(self, upload: Upload) -> _Checked:
        check_file_size(len(upload.data), upload.label, self._limits)
        kind = detect_kind(
            upload.data, upload.label, max_zip_members=self._extraction.max_zip_members
        )
        return _Checked(upload, kind)

    async def _text(self, item: _Checked) -> ExtractedText | None:
        if item.kind.is_image:
            return None
        if item.kind.is_text:
            return decode_text(item.upload.data, self._extraction.max_chars)
        return await self._readers.read(item.kind, item.upload.data, item.upload.label)
