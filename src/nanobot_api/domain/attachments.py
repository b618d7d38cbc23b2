"""Files sent with a turn: as received (Upload) and as the agent receives them."""

from __future__ import annotations

import binascii
import re
import time
import unicodedata

import attrs

from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge

MIB = 1024 * 1024
REMOTE_URL_REFUSED = (
    "Remote image URLs are not supported. "
    "Use base64 data URLs or upload files via multipart/form-data."
)
# Bounded: an unbounded repetition of parameters kept a backtracking record per
# ";a" of a 60 MB URL (gigabytes, and seconds of the event loop) before failing.
_DATA_URL_HEAD = re.compile(r"data:(?P<mime>[^;,]{0,255})(?P<params>(?:;[^;,]{0,255}){0,16}),")
# RFC 2045: line breaks and spaces in base64 (as `base64` prints it) are not data.
_BASE64_SPACE = re.compile(r"[ \t\r\n]")
_NO_SPACE = str.maketrans("", "", " \t\r\n")


@attrs.frozen
class UploadLimits:
    """How much a client may send in one request."""

    max_file_bytes: int = 10 * MIB
    max_files: int = 16
    max_request_bytes: int = 64 * MIB

    @property
    def body_too_large(self) -> str:
        """What a client is told when the whole request body is over its limit."""
        return f"Request body exceeds {size_label(self.max_request_bytes)} limit"


def size_label(size: int) -> str:
    """A limit as people read it: whole MB, or bytes under one MB."""
    return f"{size // MIB}MB" if size >= MIB else f"{size} bytes"


@attrs.frozen
class Upload:
    """A file as the client sent it; its declared name and type are only hints."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    filename: str | None = None
    declared_mime: str | None = None

    @classmethod
    def from_form(cls, data: bytes, filename: str | None, declared_mime: str | None) -> Upload:
        """A file part of a multipart form; its file name is cleaned for display."""
        return cls(data, clean_filename(filename), declared_mime or None)

    @property
    def label(self) -> str:
        """How error messages name the file."""
        return self.filename or "upload"


@attrs.frozen
class Image:
    """An image handed to the agent as is."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    mime: str
    path: str
    filename: str | None = None


@attrs.frozen
class Document:
    """A document handed to the agent as its extracted text; ``truncated`` when a bound
    cut it short, and then the text ends with the marker that says why."""

    name: str
    text: str
    path: str
    truncated: bool = False


def check_file_size(size: int, label: str, limits: UploadLimits) -> None:
    """Raises PayloadTooLarge naming the file when ``size`` is over the per-file limit."""
    if size > limits.max_file_bytes:
        raise PayloadTooLarge(f"File '{label}' exceeds {size_label(limits.max_file_bytes)} limit")


def check_file_count(count: int, limits: UploadLimits) -> None:
    """Raises PayloadTooLarge when a request carries more files than allowed."""
    if count > limits.max_files:
        raise PayloadTooLarge(f"Too many files: at most {limits.max_files} per request")


def upload_from_url(url: str, *, filename: str | None, param: str, limits: UploadLimits) -> Upload:
    """Decodes a ``data:<mime>;base64,<payload>`` URL into an Upload.

    Remote URLs are refused without being fetched; a payload that is not base64,
    or decodes to more than the per-file limit, is refused before it is kept.
    """
    stripped = url.strip()
    if re.match(r"https?://", stripped, re.IGNORECASE):
        raise InvalidRequest(REMOTE_URL_REFUSED, param)
    head = _DATA_URL_HEAD.match(stripped)
    if head is None:
        raise InvalidRequest(f"{param} must be a data URL (data:<mime>;base64,...)", param)
    if ";base64" not in head["params"].lower():
        raise InvalidRequest(f"{param} must be base64-encoded (data:<mime>;base64,...)", param)
    name = clean_filename(filename)
    label = name or "upload"
    start = head.end()
    if _BASE64_SPACE.search(stripped, start):
        stripped, start = stripped[start:].translate(_NO_SPACE), 0
    # Checked on the encoded length first so an oversized file is never decoded.
    check_file_size(least_decoded_size(len(stripped) - start), label, limits)
    data = _decode_base64(stripped, start, param)
    check_file_size(len(data), label, limits)
    return Upload(data, name, head["mime"] or None)


def least_decoded_size(encoded_chars: int) -> int:
    """The fewest bytes that many base64 characters decode to (at most two are padding):
    enough to refuse an oversized file before decoding it."""
    return encoded_chars * 3 // 4 - 2


_BASE64_SLICE = 1 << 20  # characters; a multiple of 4, so slices decode on their own


def _decode_base64(text: str, start: int, param: str) -> bytes:
    """``base64.b64decode(text[start:], validate=True)``, one slice at a time.

    A 10 MB file arrives as a 13 MB string; decoding it whole would first copy the
    payload out of the URL and then into ASCII bytes, 26 MB more at the peak.
    """
    # Padding may only end the payload; a slice alone cannot tell.
    if text.find("=", start, max(start, len(text) - 2)) >= 0:
        raise InvalidRequest(f"{param} is not valid base64", param)
    try:
        parts = [
            binascii.a2b_base64(text[at : at + _BASE64_SLICE], strict_mode=True)
            for at in range(start, len(text), _BASE64_SLICE)
        ]
    except ValueError as exc:  # binascii.Error, or a character that is not ASCII
        raise InvalidRequest(f"{param} is not valid base64", param) from exc
    return b"".join(parts)


_MAX_FILENAME_CHARS = 255


def clean_filename(name: str | None) -> str | None:
    """The client's file name made safe to show: no folders, no control or format
    characters (NUL, newlines, bidi overrides), at most 255 characters; None if
    nothing is left. It is never used to build a path; this only keeps logs, error
    messages and the agent's view of the name honest."""
    if name is None:
        return None
    base = re.split(r"[/\\]", name)[-1]
    kept = "".join(c for c in base if unicodedata.category(c) not in {"Cc", "Cf", "Cs"})
    kept = kept.strip()
    if kept in {"", ".", ".."}:
        return None
    return kept[:_MAX_FILENAME_CHARS]


# ---------------------------------------------------------------------------
# Documents as text: the bounds a reader works within and the text it produces.


@attrs.frozen
class ExtractionLimits:
    """Bounds that make a hostile document harmless; over one, the text is cut short
    (``max_chars``, pages, slides, sheets, rows, cells, ``time_budget_s``) or the file
    refused (zip members, inflated size, compression ratio)."""

    max_chars: int = 200_000
    max_pages: int = 500
    max_slides: int = 500
    max_sheets: int = 50
    max_rows: int = 20_000
    max_cells: int = 200_000
    max_zip_members: int = 10_000
    max_unzipped_bytes: int = 128 * MIB
    # XML a library parses whole, into objects far larger than the text (python-pptx,
    # python-docx, openpyxl's workbook parts); streamed parts do not count.
    max_parsed_xml_bytes: int = 16 * MIB
    max_parsed_part_bytes: int = 4 * MIB
    # Plain text and XML rarely inflate past 100x; zeros or repeated runs do.
    max_ratio: int = 200
    ratio_floor_bytes: int = 1 * MIB
    time_budget_s: float = 5.0


@attrs.frozen
class ExtractedText:
    """The text a reader got out of a document; ``truncated`` when a bound cut it short,
    in which case the text ends with a visible ``[... truncated: <why>]`` marker."""

    text: str
    truncated: bool = False


def truncation_marker(why: str) -> str:
    return f"[... truncated: {why}]"


@attrs.define
class TextBuilder:
    """Collects a document's lines within a character budget and a deadline.

    Readers ``add`` lines and stop as soon as ``add`` or ``out_of_time`` says so; the
    first reason to stop is the one the marker names.
    """

    max_chars: int
    deadline: float
    _parts: list[str] = attrs.Factory(list)
    _chars: int = 0
    _why: str | None = None

    @classmethod
    def start(cls, limits: ExtractionLimits) -> TextBuilder:
        return cls(limits.max_chars, time.monotonic() + limits.time_budget_s)

    @property
    def full(self) -> bool:
        return self._why is not None

    def add(self, line: str) -> bool:
        """Appends one line; False once the text is full (the line may be cut)."""
        if self._why is not None:
            return False
        room = self.max_chars - self._chars
        if len(line) > room:
            self._parts.append(line[:room])
            self._chars = self.max_chars
            self.stop(f"more than {self.max_chars} characters")
            return False
        self._parts.append(line)
        self._chars += len(line) + 1
        return True

    def stop(self, why: str) -> None:
        """Ends the text here because of ``why`` (the first reason given wins)."""
        if self._why is None:
            self._why = why

    def out_of_time(self) -> bool:
        """True, and the text ended, once the time budget is spent."""
        if self._why is None and time.monotonic() > self.deadline:
            self.stop("time budget spent")
        return self._why is not None

    def build(self) -> ExtractedText:
        if self._why is None:
            return ExtractedText("\n".join(self._parts))
        return ExtractedText("\n".join([*self._parts, truncation_marker(self._why)]), True)


def decode_text(data: bytes, max_chars: int) -> ExtractedText:
    """A UTF-8 text file as text: BOM dropped, cut at ``max_chars`` with a marker."""
    text = data.decode("utf-8-sig", errors="replace")
    if len(text) <= max_chars:
        return ExtractedText(text)
    why = f"more than {max_chars} characters"
    return ExtractedText(f"{text[:max_chars]}\n{truncation_marker(why)}", True)
