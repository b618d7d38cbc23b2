from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

from nanobot_api.adapters.http.multipart import (
    MultipartForm,
    multipart_boundary,
    read_multipart,
)
from nanobot_api.domain.attachments import MIB, Upload, UploadLimits
from nanobot_api.domain.errors import InvalidRequest, NanobotError, PayloadTooLarge
from tests import files

LIMITS = UploadLimits()
BOUNDARY = files.BOUNDARY.encode()


class Body:
    """An async body that records how much of it was consumed."""

    def __init__(self, data: bytes, chunk: int = 64 * 1024) -> None:
        self.chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self.consumed = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.consumed += len(chunk)
            yield chunk


async def _read(
    data: bytes, limits: UploadLimits = LIMITS, chunk: int = 64 * 1024
) -> MultipartForm:
    return await read_multipart(Body(data, chunk), BOUNDARY, limits)


async def test_fields_and_repeated_files_are_read() -> None:
    png, docx = files.make_png("a"), files.make_docx("b")
    body, _ = files.encode_multipart(
        {"message": "Summarise ✓", "session_id": "s1", "stream": "true"},
        [("files", "a.png", png, "image/png"), ("files", "r.docx", docx, "application/x")],
    )
    form = await _read(body)
    assert form.fields == {"message": "Summarise ✓", "session_id": "s1", "stream": "true"}
    assert form.uploads == (
        Upload(png, "a.png", "image/png"),
        Upload(docx, "r.docx", "application/x"),
    )


async def test_a_body_encoded_by_urllib3_like_requests_does() -> None:
    data = files.make_pdf("tok")
    body, content_type = encode_multipart_formdata(
        [("message", "hi"), ("files", ("paper.pdf", data, "application/pdf"))]
    )
    form = await read_multipart(Body(body), multipart_boundary(content_type), LIMITS)
    assert form.fields == {"message": "hi"}
    assert form.uploads == (Upload(data, "paper.pdf", "application/pdf"),)


async def test_a_file_name_is_cleaned_for_display() -> None:
    body, _ = files.encode_multipart(files=[("files", "../../etc/pa\x01sswd", b"x", "text/plain")])
    (upload,) = (await _read(body)).uploads
    assert upload.filename == "passwd"


@given(st.integers(min_value=1, max_value=400))
def test_any_chunking_gives_the_same_form(chunk: int) -> None:
    body, _ = files.encode_multipart(
        {"message": "m\r\n--not a boundary"},
        [("files", "a.bin", b"\r\n--" + BOUNDARY[:-1] + b"\r\n" + b"z" * 300, "x/y")],
    )
    form = anyio.run(_read, body, LIMITS, chunk)
    assert form.fields == {"message": "m\r\n--not a boundary"}
    assert form.uploads[0].data.endswith(b"z" * 300)


class SplitBody:
    def __init__(self, data: bytes, cuts: Sequence[int]) -> None:
        points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        self.chunks = [data[a:b] for a, b in itertools.pairwise(points)]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_a_body_cut_anywhere_gives_the_same_form(cuts: list[int]) -> None:
    payload = b"a\r\n--" + BOUNDARY + b"x\r\n-\r\r\nend\r"
    body, _ = files.encode_multipart(
        {"message": "hi\r", "stream": "true"},
        [("files", "a.bin", payload, "x/y"), ("files", "b.bin", b"\r\n", "x/y")],
    )
    form = anyio.run(read_multipart, SplitBody(body, cuts), BOUNDARY, LIMITS)
    assert form.fields == {"message": "hi\r", "stream": "true"}
    assert [u.data for u in form.uploads] == [payload, b"\r\n"]


@pytest.mark.parametrize("tail", [b"\r", b"-", b" ", b"--"])
async def test_a_delimiter_cut_before_its_line_break_adds_no_byte(tail: bytes) -> None:
    """Werkzeug 3.1 alone would append the delimiter's CR to the part (see feed)."""
    body, _ = files.encode_multipart(files=[("files", "a", b"data", "x/y")])
    at = body.rindex(b"--" + BOUNDARY) + 2 + len(BOUNDARY)
    cut = at + len(tail) if body.startswith(tail, at) else at
    form = await read_multipart(SplitBody(body, [cut]), BOUNDARY, LIMITS)
    assert form.uploads[0].data == b"data"


async def test_a_file_over_the_limit_is_refused_without_reading_the_rest() -> None:
    body, _ = files.encode_multipart(files=[("files", "big.bin", b"\0" * (20 * MIB), "x/y")])
    stream = Body(body)
    with pytest.raises(PayloadTooLarge) as info:
        await read_multipart(stream, BOUNDARY, LIMITS)
    assert info.value.message == "File 'big.bin' exceeds 10MB limit"
    assert stream.consumed <= 10 * MIB + 128 * 1024


async def test_a_file_of_exactly_the_limit_is_accepted() -> None:
    limits = UploadLimits(max_file_bytes=1000)
    body, _ = files.encode_multipart(files=[("files", "f", b"a" * 1000, "x/y")])
    assert len((await _read(body, limits, chunk=7)).uploads[0].data) == 1000
    body, _ = files.encode_multipart(files=[("files", "f", b"a" * 1001, "x/y")])
    with pytest.raises(PayloadTooLarge, match="File 'f' exceeds"):
        await _read(body, limits, chunk=7)


async def test_one_file_too_many_is_refused_at_its_header() -> None:
    limits = UploadLimits(max_files=2)
    body, _ = files.encode_multipart(
        files=[("files", f"{n}.txt", b"x" * 100_000, "text/plain") for n in range(3)]
    )
    stream = Body(body, chunk=1024)
    with pytest.raises(PayloadTooLarge, match="at most 2"):
        await read_multipart(stream, BOUNDARY, limits)
    assert stream.consumed < 2 * 100_000 + 2048


async def test_a_huge_text_field_is_refused() -> None:
    body, _ = files.encode_multipart({"message": "x" * (MIB + 1)})
    with pytest.raises(PayloadTooLarge, match="Form field 'message' exceeds 1MB"):
        await _read(body)


async def test_thousands_of_tiny_fields_are_refused() -> None:
    part = f'--{files.BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n'
    body = (part * 1000 + f"--{files.BOUNDARY}--\r\n").encode()
    with pytest.raises(PayloadTooLarge, match="Too many form fields"):
        await _read(body)


async def test_a_file_under_another_field_name_is_refused() -> None:
    body, _ = files.encode_multipart(files=[("attachment", "a.txt", b"x", "text/plain")])
    with pytest.raises(InvalidRequest, match="Unexpected file field 'attachment'") as info:
        await _read(body)
    assert info.value.param == "attachment"


async def test_a_browser_empty_file_input_is_ignored() -> None:
    body, _ = files.encode_multipart({"message": "hi"}, [("files", "", b"", "application/x")])
    assert (await _read(body)).uploads == ()


def _lines(*lines: str) -> bytes:
    return "\r\n".join(lines).encode()


B = files.BOUNDARY


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "ends before its closing boundary"),
        (b"garbage without any boundary", "ends before its closing boundary"),
        (_lines(f"--{B}", 'Content-Disposition: form-data; name="m"', "", "unterminated"), "ends"),
        (_lines(f"--{B}", "X-No-Disposition: 1", "", "v", f"--{B}--", ""), "Malformed"),
        (_lines(f"--{B}", "Content-Disposition: form-data", "", "v", f"--{B}--", ""), "no name"),
        (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="m"\r\n\r\n'
            b"\xff\xfe\r\n--" + BOUNDARY + b"--\r\n",
            "not UTF-8",
        ),
        (b"--" + BOUNDARY + b"\r\n" + b"H" * 300_000, "too long"),
        (b"x" * 300_000, "too long"),
    ],
    ids=[
        "empty",
        "no-boundary",
        "unterminated",
        "no-disposition",
        "no-name",
        "bad-utf8",
        "endless-header",
        "endless-preamble",
    ],
)
async def test_malformed_bodies_are_invalid_requests(body: bytes, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        await _read(body, chunk=4096)


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_any_bytes_give_a_form_or_a_domain_error(junk: bytes, chunk: int) -> None:
    prefix = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="files"; filename="f"\r\n'
    )

    async def read(body: bytes) -> None:
        try:
            form = await _read(body, LIMITS, chunk)
        except NanobotError:
            return
        assert isinstance(form, MultipartForm)

    for body in (junk, prefix + junk, junk + b"\r\n--" + BOUNDARY + b"--\r\n"):
        anyio.run(read, body)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data; charset=utf-8; boundary=----x", b"----x"),
    ],
)
def test_the_boundary_comes_from_the_content_type(content_type: str, boundary: bytes) -> None:
    assert multipart_boundary(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "x" * 71,
        'multipart/form-data; boundary="bad\x01"',
        "application/json; boundary=abc",
    ],
)
def test_a_missing_or_invalid_boundary_is_an_invalid_request(content_type: str) -> None:
    with pytest.raises(InvalidRequest):
        multipart_boundary(content_type)
