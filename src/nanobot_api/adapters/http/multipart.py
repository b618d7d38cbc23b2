"""multipart/form-data read as a stream, refusing an oversized part as soon as it shows.

Quart's own form parser spools every file before the route sees any of it; this
reader feeds werkzeug's sans-I/O ``MultipartDecoder`` chunk by chunk instead, so
a file over ``UploadLimits.max_file_bytes`` (or one file too many) is refused
the moment it crosses the limit, without the rest of the body being read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable

import attrs
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from nanobot_api.domain.attachments import (
    MIB,
    Upload,
    UploadLimits,
    check_file_count,
    check_file_size,
    clean_filename,
)
from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge

FILE_FIELDS = frozenset({"files", "file"})
MAX_FIELD_BYTES = 1 * MIB
MAX_FIELDS = 64
# Fed to the decoder in slices: it rescans its buffer for the boundary per event.
_SLICE = 64 * 1024
# Headers and preamble sit in the decoder's buffer until they end; a body that
# never ends them must not grow it without bound.
_MAX_BUFFERED = 64 * 1024 + _SLICE
_BOUNDARY_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? "
)
MALFORMED = "Malformed multipart/form-data body"
# What may follow "--boundary" at the end of a buffer and still become a delimiter.
_OPEN_TAIL = re.compile(rb"-|[ \t]*\r?")


@attrs.frozen
class MultipartForm:
    """A form as received: its text fields (the last value of each name wins) and,
    in order, the files sent as ``files`` (or ``file``)."""

    fields: dict[str, str]
    uploads: tuple[Upload, ...] = ()


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, or InvalidRequest."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if mimetype.lower() != "multipart/form-data":
        raise InvalidRequest("Expected a multipart/form-data body")
    # RFC 2046: 1-70 characters from a small set, not ending in a space.
    if not 0 < len(boundary) <= 70 or not set(boundary) <= _BOUNDARY_CHARS:
        raise InvalidRequest(f"{MALFORMED}: missing or invalid boundary")
    if boundary.endswith(" "):
        raise InvalidRequest(f"{MALFORMED}: missing or invalid boundary")
    return boundary.encode("ascii")


async def read_multipart(
    chunks: AsyncIterable[bytes], boundary: bytes, limits: UploadLimits
) -> MultipartForm:
    """Reads a multipart/form-data body from ``chunks`` as they arrive.

    Raises PayloadTooLarge as soon as a file exceeds ``limits.max_file_bytes``
    ("File 'name' exceeds 10MB limit"), the files exceed ``limits.max_files`` or a
    text field exceeds 1 MiB, without reading further; InvalidRequest for a malformed
    body. The whole body's limit is the caller's, which counts what ``chunks`` yields
    for any kind of body. Memory held is the files accepted so far plus one slice of
    the body.
    """
    reader = _FormReader(boundary, limits)
    async for chunk in chunks:
        for start in range(0, len(chunk), _SLICE):
            reader.feed(chunk[start : start + _SLICE])
    return reader.finish()


class _FormReader:
    """The decoder's events turned into fields and uploads, limits checked per event."""

    def __init__(self, boundary: bytes, limits: UploadLimits) -> None:
        self._decoder = MultipartDecoder(boundary)
        self._limits = limits
        self._fields: dict[str, str] = {}
        self._uploads: list[Upload] = []
        self._part: Field | File | None = None
        self._label = "upload"
        self._buffer = bytearray()
        self._text_parts = 0
        self._done = False
        self._delimiter = b"--" + boundary
        self._seen = b""  # the last bytes given to the decoder
        self._held = b""

    def feed(self, data: bytes) -> None:
        """Hands ``data`` to the decoder, holding back a delimiter line that may be
        incomplete.

        Werkzeug 3.1's decoder misreads a delimiter cut short at the end of its buffer
        (``\\r\\n--B`` complete, then only ``\\r`` or ``-``): it emits the delimiter's
        CR as part data. So when ``--B`` would become complete with a tail that may
        still grow, the decoder is given all but its last byte, which it keeps as a
        partial boundary, until the bytes that settle it arrive.
        """
        piece = self._held + data
        seen = self._seen + piece
        at = seen.rfind(self._delimiter)
        end = at + len(self._delimiter)
        cut = len(piece)
        if at >= 0 and end > len(self._seen) and _OPEN_TAIL.fullmatch(seen, end):
            cut = end - 1 - len(self._seen)
        self._held = piece[cut:]
        if len(self._held) > _MAX_BUFFERED:
            raise InvalidRequest(f"{MALFORMED}: a delimiter line is too long")
        self._seen = (self._seen + piece[:cut])[-len(self._delimiter) :]
        self._receive(piece[:cut])

    def finish(self) -> MultipartForm:
        """Ends the body; the form, or InvalidRequest if it was cut short."""
        self._receive(self._held)
        self._receive(None)
        if not self._done:
            raise InvalidRequest(f"{MALFORMED}: the body ends before its closing boundary")
        return MultipartForm(self._fields, tuple(self._uploads))

    def _receive(self, data: bytes | None) -> None:
        try:
            self._decoder.receive_data(data)
            self._drain()
        except (ValueError, LookupError, AttributeError, TypeError) as exc:
            # The decoder reports a malformed body with whatever its parsing hit
            # (ValueError, UnicodeDecodeError, AttributeError on a missing match).
            if data is None:
                raise InvalidRequest(
                    f"{MALFORMED}: the body ends before its closing boundary"
                ) from exc
            raise InvalidRequest(MALFORMED) from exc
        if len(self._decoder.buffer) > _MAX_BUFFERED:
            raise InvalidRequest(f"{MALFORMED}: a part header or the preamble is too long")

    def _drain(self) -> None:
        while True:
            event = self._decoder.next_event()
            if isinstance(event, NeedData):
                return
            if isinstance(event, Epilogue):
                # Only emitted once the body has ended; asking again would raise.
                self._done = True
                return
            if isinstance(event, File | Field):
                self._start(event)
            elif isinstance(event, Data):
                self._data(event)

    def _start(self, part: Field | File) -> None:
        self._part = part
        self._buffer = bytearray()
        if not part.name:
            raise InvalidRequest(f"{MALFORMED}: a part has no name")
        if isinstance(part, File):
            if part.name not in FILE_FIELDS:
                raise InvalidRequest(
                    f"Unexpected file field '{part.name}': send files as 'files'", part.name
                )
            self._label = clean_filename(part.filename) or "upload"
            check_file_count(len(self._uploads) + 1, self._limits)
        else:
            # Counted per part, not per name: a thousand parts of one name cost as much.
            self._text_parts += 1
            if self._text_parts > MAX_FIELDS:
                raise PayloadTooLarge(f"Too many form fields: at most {MAX_FIELDS}")

    def _data(self, event: Data) -> None:
        part = self._part
        if part is None:
            raise InvalidRequest(MALFORMED)
        self._buffer += event.data
        if isinstance(part, File):
            check_file_size(len(self._buffer), self._label, self._limits)
        elif len(self._buffer) > MAX_FIELD_BYTES:
            raise PayloadTooLarge(
                f"Form field '{part.name}' exceeds {MAX_FIELD_BYTES // MIB}MB limit", part.name
            )
        if not event.more_data:
            self._finish(part)

    def _finish(self, part: Field | File) -> None:
        data, self._buffer, self._part = bytes(self._buffer), bytearray(), None
        if isinstance(part, Field):
            try:
                self._fields[part.name] = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequest(
                    f"Form field '{part.name}' is not UTF-8 text", part.name
                ) from exc
        elif part.filename or data:
            # A browser's empty file input sends a part with no name and no bytes.
            mime = part.headers.get("content-type")
            self._uploads.append(Upload.from_form(data, part.filename, mime))
