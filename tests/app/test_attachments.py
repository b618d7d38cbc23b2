from __future__ import annotations

from pathlib import Path

import pytest

from nanobot_api.adapters.documents import DocumentReaderByKind
from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.app.attachments import AttachmentIntake
from nanobot_api.domain.attachments import MIB, ExtractionLimits, Upload, UploadLimits
from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.ports import Attachments
from tests import files


def _bytes(path: str | Path) -> bytes:
    # Reading a small file in a test needs no worker thread.
    return Path(path).read_bytes()


def _intake(
    workspace: Path, limits: UploadLimits | None = None, extraction: ExtractionLimits | None = None
) -> AttachmentIntake:
    return AttachmentIntake(
        DocumentReaderByKind.standard(extraction),
        FilesystemMediaStore.in_workspace(workspace),
        limits or UploadLimits(),
        extraction=extraction,
    )


def _stored(workspace: Path) -> list[Path]:
    root = workspace / "media" / "api"
    return sorted(p for p in root.iterdir() if p.suffix != ".json") if root.exists() else []


async def test_images_stay_images_and_documents_become_text(tmp_path: Path) -> None:
    uploads = [
        Upload(files.make_png("img-tok"), "cat.png", "image/png"),
        Upload(files.make_docx("docx-tok"), "report.docx", None),
        Upload(files.make_xlsx("xlsx-tok"), "sheet.xlsx", None),
        Upload(files.make_pptx("pptx-tok"), "deck.pptx", None),
        Upload(files.make_pdf("pdf-tok"), "paper.pdf", None),
        Upload(files.make_text("text-tok"), "notes.md", "text/markdown"),
        Upload(files.make_webp("webp-tok"), None, None),
    ]
    images, documents = await _intake(tmp_path).accept(uploads)
    assert [(i.mime, i.filename) for i in images] == [
        ("image/png", "cat.png"),
        ("image/webp", None),
    ]
    assert b"img-tok" in images[0].data
    assert [d.name for d in documents] == [
        "report.docx",
        "sheet.xlsx",
        "deck.pptx",
        "paper.pdf",
        "notes.md",
    ]
    for doc, token in zip(documents, ["docx", "xlsx", "pptx", "pdf", "text"], strict=True):
        assert f"{token}-tok" in doc.text
        assert not doc.truncated
    stored = _stored(tmp_path)
    assert len(stored) == 7
    assert {Path(i.path) for i in images} | {Path(d.path) for d in documents} == set(stored)
    assert _bytes(images[0].path) == uploads[0].data


async def test_the_type_comes_from_the_bytes_not_the_declared_mime_or_name(
    tmp_path: Path,
) -> None:
    lying = Upload(files.make_pdf("pdf-tok"), "photo.png", "image/png")
    images, documents = await _intake(tmp_path).accept([lying])
    assert images == ()
    assert "pdf-tok" in documents[0].text
    assert documents[0].path.endswith(".pdf")


async def test_a_hostile_name_is_only_metadata(tmp_path: Path) -> None:
    upload = Upload.from_form(files.make_docx("tok"), "../../etc/pass\x00wd.docx", None)
    _, (document,) = await _intake(tmp_path).accept([upload])
    assert document.name == "passwd.docx"
    assert Path(document.path).parent == tmp_path / "media" / "api"


async def test_one_refused_file_refuses_the_request_and_stores_nothing(tmp_path: Path) -> None:
    uploads = [
        Upload(files.make_png("ok"), "ok.png"),
        Upload(files.make_docx("ok"), "ok.docx"),
        Upload(files.make_elf(), "tool"),
    ]
    with pytest.raises(UnsupportedMediaType, match=r"^Unsupported file type: 'tool'"):
        await _intake(tmp_path).accept(uploads)
    assert _stored(tmp_path) == []


async def test_an_unreadable_document_stores_nothing(tmp_path: Path) -> None:
    uploads = [Upload(files.make_png("ok"), "ok.png"), Upload(files.make_zip_bomb(), "b.docx")]
    with pytest.raises(PayloadTooLarge, match=r"'b\.docx'"):
        await _intake(tmp_path).accept(uploads)
    assert _stored(tmp_path) == []


async def test_a_file_one_byte_over_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    data = files.make_text("t").ljust(10 * MIB + 1, b" ")
    with pytest.raises(PayloadTooLarge) as info:
        await _intake(tmp_path).accept([Upload(data, "big.txt")])
    assert info.value.message == "File 'big.txt' exceeds 10MB limit"


async def test_one_file_too_many_is_refused(tmp_path: Path) -> None:
    uploads = [Upload(files.make_png(str(n)), f"{n}.png") for n in range(3)]
    with pytest.raises(PayloadTooLarge, match="at most 2"):
        await _intake(tmp_path, UploadLimits(max_files=2)).accept(uploads)


async def test_an_empty_file_is_an_invalid_request_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"'empty\.pdf' is empty"):
        await _intake(tmp_path).accept([Upload(b"", "empty.pdf", "application/pdf")])


async def test_long_text_files_are_cut_with_a_marker(tmp_path: Path) -> None:
    extraction = ExtractionLimits(max_chars=10)
    _, (document,) = await _intake(tmp_path, extraction=extraction).accept(
        [Upload(b"0123456789abcdef", "long.txt")]
    )
    assert document.truncated
    assert document.text == "0123456789\n[... truncated: more than 10 characters]"
    assert _bytes(document.path) == b"0123456789abcdef"


async def test_no_uploads_is_nothing(tmp_path: Path) -> None:
    assert await _intake(tmp_path).accept([]) == ((), ())


def test_it_implements_the_attachments_port(tmp_path: Path) -> None:
    port: Attachments = _intake(tmp_path)
    assert port is not None


def test_kinds_map_to_the_stored_extension() -> None:
    assert FileKind.JPEG.extension == ".jpg"
