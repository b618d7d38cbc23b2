"""Hypothesis strategies for the domain's inputs (see python-attrs/attrs/tests/strategies.py)."""

from __future__ import annotations

import base64
import io
import zipfile

from hypothesis import strategies as st

from nanobot_api.domain.filetypes import FileKind

# ---------------------------------------------------------------------------
# Files and data URLs (uploads)

_MAGIC = {
    FileKind.PNG: b"\x89PNG\r\n\x1a\n",
    FileKind.JPEG: b"\xff\xd8\xff",
    FileKind.GIF: b"GIF89a",
    FileKind.PDF: b"%PDF-1.7\n",
}
_OFFICE_MAIN = {
    FileKind.DOCX: "word/document.xml",
    FileKind.XLSX: "xl/workbook.xml",
    FileKind.PPTX: "ppt/presentation.xml",
}
MAGIC_PREFIXES = (
    *_MAGIC.values(),
    b"RIFF\x00\x00\x00\x00WEBP",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x7fELF",
    b"MZ",
    b"\xef\xbb\xbf",
)


def _office_zip(main: str, extra: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr(main, b"<root/>")
        for name, data in extra:
            archive.writestr(name, data)
    return buf.getvalue()


def file_bytes(kind: FileKind) -> st.SearchStrategy[bytes]:
    """Bytes that are of ``kind`` by its detection rule, with arbitrary content."""
    tail = st.binary(max_size=256)
    if kind in _MAGIC:
        return tail.map(lambda t: _MAGIC[kind] + t)
    if kind is FileKind.WEBP:
        return tail.map(lambda t: b"RIFF" + len(t).to_bytes(4, "little") + b"WEBP" + t)
    if kind in _OFFICE_MAIN:
        members = st.lists(
            st.tuples(st.from_regex(r"[a-z]{1,8}/[a-z]{1,8}\.xml", fullmatch=True), tail),
            max_size=3,
            unique_by=lambda m: m[0],
        )
        return members.map(lambda extra: _office_zip(_OFFICE_MAIN[kind], extra))
    # Text: any characters but NUL, optionally behind a BOM.
    text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1)
    return st.tuples(st.booleans(), text).map(
        lambda bt: (b"\xef\xbb\xbf" if bt[0] else b"") + bt[1].encode()
    )


def any_bytes() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, often behind a magic number so detection goes deeper."""
    return st.one_of(
        st.binary(max_size=512),
        st.tuples(st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=512)).map(b"".join),
        st.sampled_from(list(FileKind)).flatmap(file_bytes),
    )


def mime_types() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([k.mime for k in FileKind] + ["", "application/octet-stream"]),
        st.text(st.characters(exclude_characters=",;"), max_size=30),
    )


def data_urls() -> st.SearchStrategy[str]:
    """Well-formed base64 data URLs of arbitrary bytes and declared types."""
    return st.tuples(mime_types(), any_bytes()).map(
        lambda mb: f"data:{mb[0]};base64,{base64.b64encode(mb[1]).decode()}"
    )


def url_like_strings() -> st.SearchStrategy[str]:
    """Anything a client might put where a data URL belongs."""
    prefixes = st.sampled_from(
        ["", "data:", "data:image/png;base64,", "data:;base64,", "http://", "HTTPS://", " "]
    )
    return st.one_of(
        data_urls(),
        st.tuples(prefixes, st.text(max_size=200)).map("".join),
        st.text(max_size=200),
    )


def filenames() -> st.SearchStrategy[str]:
    """Client file names, hostile ones included (folders, .., NUL, controls, bidi)."""
    parts = st.one_of(
        st.text(max_size=20),
        st.sampled_from(["..", ".", "/", "\\", "\x00", "\n", "\u202e", "../", "C:\\"]),
    )
    return st.lists(parts, max_size=6).map("".join)


# ---------------------------------------------------------------------------
# Outbox delivery attempts

OutboxStep = tuple[str, float, str]


def outbox_steps() -> st.SearchStrategy[list[OutboxStep]]:
    """What can happen to an outbox event, in any order: ``(kind, seconds later, text)``
    with kind ``claim`` (text: the worker's name), ``fail``, ``give-up`` (text: the
    error, any characters), ``deliver``, ``park``, ``retry`` or ``force``."""
    kinds = st.sampled_from(
        ["claim", "claim", "fail", "give-up", "deliver", "park", "retry", "force"]
    )
    step = st.tuples(kinds, st.floats(0, 1e4), st.text(max_size=600))
    return st.lists(step, max_size=60)
