from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.errors import (
    InvalidRequest,
    NanobotError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from nanobot_api.domain.filetypes import FileKind, detect_kind, zip_directory
from tests import files
from tests.strategies import any_bytes, file_bytes, filenames

REAL_FILES = [
    (FileKind.PNG, files.make_png),
    (FileKind.JPEG, files.make_jpeg),
    (FileKind.GIF, files.make_gif),
    (FileKind.WEBP, files.make_webp),
    (FileKind.PDF, files.make_pdf),
    (FileKind.DOCX, files.make_docx),
    (FileKind.XLSX, files.make_xlsx),
    (FileKind.PPTX, files.make_pptx),
    (FileKind.TEXT, files.make_text),
]


@pytest.mark.parametrize(("kind", "make"), REAL_FILES, ids=[k.name for k, _ in REAL_FILES])
def test_real_files_are_detected_from_their_bytes(
    kind: FileKind, make: Callable[[str], bytes]
) -> None:
    assert detect_kind(make("tok"), "whatever.bin") is kind


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        "# Title\n\n- item\n",
        "a,b,c\n1,2,3\n",
        '{"key": [1, 2]}',
        "key: value\nlist:\n  - a\n",
        '<?xml version="1.0"?><a b="c"/>',
        "<!doctype html><p>hi</p>",
        "def f():\n\treturn 1\r\n",
        "\ufeffwith a byte order mark",
        "ünïcödé ✓ 漢字 🙂",
    ],
)
def test_utf8_text_of_any_common_kind_is_text(text: str) -> None:
    assert detect_kind(text.encode(), "notes") is FileKind.TEXT


def test_an_empty_file_is_an_invalid_request_naming_it() -> None:
    with pytest.raises(InvalidRequest, match=r"'empty\.txt' is empty"):
        detect_kind(b"", "empty.txt")


@pytest.mark.parametrize("data", [files.make_elf(), files.make_pe()], ids=["elf", "pe"])
def test_executables_are_unsupported_naming_the_file(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match=r"^Unsupported file type: 'tool\.txt'"):
        detect_kind(data, "tool.txt")


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\x02\x03", b"\xff\xfe" + "utf-16".encode("utf-16-le"), b"abc\x00def", b"\xc3\x28"],
    ids=["binary", "utf16", "nul", "bad-utf8"],
)
def test_binary_and_non_utf8_bytes_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="Unsupported file type"):
        detect_kind(data, "x")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_a_zip_that_is_not_office_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType, match="not a Word, Excel or PowerPoint"):
        detect_kind(_zip({"readme.txt": b"hi", "word/x.xml": b""}), "a.docx")


@pytest.mark.parametrize(
    ("folder", "kind"),
    [("word/", FileKind.DOCX), ("xl/", FileKind.XLSX), ("ppt/", FileKind.PPTX)],
)
def test_office_kind_comes_from_the_zip_members(folder: str, kind: FileKind) -> None:
    data = _zip({"[Content_Types].xml": b"<Types/>", f"{folder}other.xml": b"<x/>"})
    assert detect_kind(data, "misleading.pdf") is kind


def test_a_damaged_zip_is_unsupported() -> None:
    data = files.make_docx("tok")
    with pytest.raises(UnsupportedMediaType, match="damaged zip"):
        detect_kind(data[: len(data) // 2], "half.docx")


def test_a_zip_listing_too_many_members_is_refused_before_listing_them_all() -> None:
    data = files.make_many_members_zip(members=300)
    with pytest.raises(PayloadTooLarge, match=r"'many\.xlsx' has too many archive members"):
        detect_kind(data, "many.xlsx", max_zip_members=100)


@pytest.mark.parametrize("force_zip64", [False, True])
def test_zip_directory_agrees_with_zipfile(force_zip64: bool) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(5):
            with archive.open(f"dir/{n}.xml", "w", force_zip64=force_zip64) as member:
                member.write(b"x" * 1000 * n)
    data = b"prepended junk" + buf.getvalue()
    expected = zipfile.ZipFile(io.BytesIO(data)).infolist()
    members = zip_directory(data, "z")
    assert [(m.name, m.size, m.compressed_size) for m in members] == [
        (i.filename, i.file_size, i.compress_size) for i in expected
    ]


def test_kind_properties() -> None:
    assert FileKind.PNG.is_image
    assert not FileKind.PNG.is_document
    assert FileKind.TEXT.is_text
    assert {k for k in FileKind if k.is_document} == {
        FileKind.PDF,
        FileKind.DOCX,
        FileKind.XLSX,
        FileKind.PPTX,
    }
    assert all(k.extension.startswith(".") and k.mime == k.value for k in FileKind)


@given(st.sampled_from(list(FileKind)).flatmap(lambda k: st.tuples(st.just(k), file_bytes(k))))
def test_bytes_of_a_kind_are_detected_as_that_kind(kind_and_data: tuple[FileKind, bytes]) -> None:
    kind, data = kind_and_data
    assert detect_kind(data, "f") is kind


@given(any_bytes(), filenames())
def test_any_bytes_give_a_kind_or_a_domain_error(data: bytes, name: str) -> None:
    try:
        kind = detect_kind(data, name)
    except NanobotError:
        return
    assert isinstance(kind, FileKind)


def _outcome(data: bytes, name: str) -> FileKind | type[NanobotError]:
    try:
        return detect_kind(data, name)
    except NanobotError as exc:
        return type(exc)


@given(any_bytes(), filenames(), filenames())
def test_the_detected_kind_depends_on_the_bytes_only(
    data: bytes, name: str, other_name: str
) -> None:
    assert _outcome(data, name) == _outcome(data, other_name)
