"""What kind of file some bytes are, decided from the bytes alone.

A client's file name and declared MIME type are hints that a hostile or careless
client gets wrong, so neither is consulted: images by their magic numbers, PDF by
its header, Office files by the members their zip directory lists, text by being
valid UTF-8 without NUL bytes. Anything else is an ``UnsupportedMediaType``.

The zip directory is read here by hand (``zip_directory``) rather than through
``zipfile`` because ``zipfile`` parses every entry of a directory up front, and a
hostile 10 MB archive can list a hundred thousand of them; this walk stops at
the first entry past the limit. Both detection and the document readers' zip
guard use it, so they see the same members the libraries will.
"""

from __future__ import annotations

import enum
import struct

import attrs

from nanobot_api.domain.attachments import ExtractionLimits
from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

# The extraction bound, so a file detected as Office is also one the readers open.
DEFAULT_MAX_ZIP_MEMBERS = ExtractionLimits().max_zip_members


class FileKind(enum.Enum):
    """A supported kind of file; the value is its canonical MIME type."""

    PNG = "image/png"
    JPEG = "image/jpeg"
    GIF = "image/gif"
    WEBP = "image/webp"
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    TEXT = "text/plain"

    @property
    def mime(self) -> str:
        return self.value

    @property
    def extension(self) -> str:
        """The file extension a stored copy gets, with its dot (``.png``)."""
        return _EXTENSIONS[self]

    @property
    def is_image(self) -> bool:
        """Handed to the agent as an image."""
        return self in _IMAGES

    @property
    def is_text(self) -> bool:
        """Read directly as UTF-8."""
        return self is FileKind.TEXT

    @property
    def is_document(self) -> bool:
        """Handed to the agent as the text a document reader extracts."""
        return not (self.is_image or self.is_text)


_IMAGES = frozenset({FileKind.PNG, FileKind.JPEG, FileKind.GIF, FileKind.WEBP})
_EXTENSIONS = {
    FileKind.PNG: ".png",
    FileKind.JPEG: ".jpg",
    FileKind.GIF: ".gif",
    FileKind.WEBP: ".webp",
    FileKind.PDF: ".pdf",
    FileKind.DOCX: ".docx",
    FileKind.XLSX: ".xlsx",
    FileKind.PPTX: ".pptx",
    FileKind.TEXT: ".txt",
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
    (b"\xff\xd8\xff", FileKind.JPEG),
    (b"GIF87a", FileKind.GIF),
    (b"GIF89a", FileKind.GIF),
    (b"%PDF-", FileKind.PDF),
)
# Office packages name their main part; the folder alone is the fallback.
_OFFICE_PARTS = (
    (FileKind.DOCX, "word/document.xml", "word/"),
    (FileKind.XLSX, "xl/workbook.xml", "xl/"),
    (FileKind.PPTX, "ppt/presentation.xml", "ppt/"),
)


def unsupported(label: str, why: str | None = None) -> UnsupportedMediaType:
    """The error for a file of no supported kind, naming the file."""
    detail = f" ({why})" if why else ""
    return UnsupportedMediaType(f"Unsupported file type: '{label}'{detail}")


def detect_kind(
    data: bytes, label: str, *, max_zip_members: int = DEFAULT_MAX_ZIP_MEMBERS
) -> FileKind:
    """Returns the kind of ``data``; ``label`` only names the file in errors.

    Raises InvalidRequest for an empty file, PayloadTooLarge for a zip listing more
    than ``max_zip_members`` members, UnsupportedMediaType for anything else that is
    not a supported kind.
    """
    if not data:
        raise InvalidRequest(f"File '{label}' is empty")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return FileKind.WEBP
    if data.startswith(b"PK\x03\x04"):
        return _office_kind(data, label, max_zip_members)
    if data.startswith(b"\x7fELF"):
        # DEL, "ELF" is valid UTF-8; an executable must not pass as text.
        raise unsupported(label, "an executable")
    if _is_utf8_text(data):
        return FileKind.TEXT
    raise unsupported(label)


def _is_utf8_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")  # a leading BOM is valid UTF-8 too
    except UnicodeDecodeError:
        return False
    return True


def _office_kind(data: bytes, label: str, max_members: int) -> FileKind:
    names = {m.name for m in zip_directory(data, label, max_members=max_members)}
    if "[Content_Types].xml" in names:
        for kind, main_part, _ in _OFFICE_PARTS:
            if main_part in names:
                return kind
        for kind, _, folder in _OFFICE_PARTS:
            if any(name.startswith(folder) for name in names):
                return kind
    raise unsupported(label, "a zip archive that is not a Word, Excel or PowerPoint file")


# ---------------------------------------------------------------------------
# The zip central directory, read the way Python's zipfile reads it.


@attrs.frozen
class ZipMember:
    """One entry of a zip's central directory, sizes as declared there.

    ``zipfile`` never inflates a member past its declared size (a member that lies
    fails its CRC check), so declared sizes bound what a library can inflate.
    """

    name: str
    compressed_size: int
    size: int
    encrypted: bool


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record, 22 bytes
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # 46 bytes, then name, extra, comment
_ZIP64_EXTRA = 0x0001
_U32_MAX = 0xFFFFFFFF


def zip_directory(
    data: bytes, label: str, *, max_members: int = DEFAULT_MAX_ZIP_MEMBERS
) -> tuple[ZipMember, ...]:
    """Lists the members of the zip archive ``data`` without inflating anything.

    Raises UnsupportedMediaType if there is no readable central directory, and
    PayloadTooLarge as soon as it lists more than ``max_members`` entries.
    """
    where = _central_directory(data)
    if where is None:
        raise unsupported(label, "a damaged zip archive")
    start, end = where
    members: list[ZipMember] = []
    pos = start
    while pos < end:
        if len(members) >= max_members:
            raise PayloadTooLarge(
                f"File '{label}' has too many archive members (at most {max_members})"
            )
        member, pos = _central_entry(data, pos)
        if member is None:
            raise unsupported(label, "a damaged zip archive")
        members.append(member)
    return tuple(members)


def _central_directory(data: bytes) -> tuple[int, int] | None:
    """Where the central directory lies, as ``zipfile._EndRecData`` finds it."""
    eocd = len(data) - _EOCD.size
    if not (eocd >= 0 and data.startswith(b"PK\x05\x06", eocd) and data.endswith(b"\0\0")):
        # Not at the very end, so a comment follows it: search as zipfile does.
        eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF))
    if eocd < 0 or len(data) - eocd < _EOCD.size:
        return None
    *_, cd_size, _cd_offset, _comment = _EOCD.unpack_from(data, eocd)
    record_end = eocd
    locator = eocd - _EOCD64_LOCATOR.size
    if locator >= 0 and data.startswith(b"PK\x06\x07", locator):
        record = locator - _EOCD64.size
        if record < 0 or not data.startswith(b"PK\x06\x06", record):
            return None
        cd_size = _EOCD64.unpack_from(data, record)[8]
        record_end = record
    # Like zipfile, the directory is taken to end where the end record begins, which
    # also copes with bytes prepended to the archive.
    start = record_end - cd_size
    if start < 0:
        return None
    return start, record_end


def _central_entry(data: bytes, pos: int) -> tuple[ZipMember | None, int]:
    if pos + _CENTRAL.size > len(data) or not data.startswith(b"PK\x01\x02", pos):
        return None, pos
    fields = _CENTRAL.unpack_from(data, pos)
    flags, compressed, size = fields[5], fields[10], fields[11]
    name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
    name_at = pos + _CENTRAL.size
    extra_at = name_at + name_len
    after = extra_at + extra_len + comment_len
    if after > len(data):
        return None, pos
    raw_name = data[name_at:extra_at]
    name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    if _U32_MAX in (size, compressed):
        sizes = _zip64_sizes(data[extra_at : extra_at + extra_len], size, compressed)
        if sizes is None:
            return None, pos
        size, compressed = sizes
    return ZipMember(name, compressed, size, bool(flags & 0x1)), after


def _zip64_sizes(extra: bytes, size: int, compressed: int) -> tuple[int, int] | None:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if kind == _ZIP64_EXTRA:
            # Only the fields whose 32-bit value overflowed are present, in this order.
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if size == _U32_MAX:
                if not values:
                    return None
                size = values.pop(0)
            if compressed == _U32_MAX:
                if not values:
                    return None
                compressed = values.pop(0)
            return size, compressed
        at += 4 + length
    return None
