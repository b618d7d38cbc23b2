from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.attachments import (
    MIB,
    REMOTE_URL_REFUSED,
    Document,
    ExtractedText,
    ExtractionLimits,
    TextBuilder,
    Upload,
    UploadLimits,
    check_file_count,
    check_file_size,
    clean_filename,
    decode_text,
    upload_from_url,
)
from nanobot_api.domain.errors import InvalidRequest, NanobotError, PayloadTooLarge
from nanobot_api.domain.models import document_text
from tests.strategies import any_bytes, data_urls, filenames, mime_types, url_like_strings

LIMITS = UploadLimits()
PARAM = "messages[0].content[1].image_url.url"


def _url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_a_data_url_becomes_an_upload_keeping_its_declared_type_as_a_hint() -> None:
    upload = upload_from_url(_url(b"abc"), filename="a.png", param=PARAM, limits=LIMITS)
    assert upload == Upload(b"abc", "a.png", "image/png")


@pytest.mark.parametrize("url", ["http://example.com/a.png", " HTTPS://x/y"])
def test_remote_urls_are_refused_without_fetching(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        upload_from_url(url, filename=None, param=PARAM, limits=LIMITS)
    assert info.value.message == REMOTE_URL_REFUSED
    assert info.value.param == PARAM


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("data:image/png;base64,!!!notbase64", "not valid base64"),
        ("data:image/png;base64,abc", "not valid base64"),
        ("data:image/png,rawtext", "must be base64-encoded"),
        ("ftp://x", "must be a data URL"),
    ],
)
def test_malformed_data_urls_are_invalid_requests_naming_the_param(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why) as info:
        upload_from_url(url, filename=None, param=PARAM, limits=LIMITS)
    assert info.value.param == PARAM


def test_a_file_of_exactly_the_limit_is_accepted_and_one_byte_more_refused() -> None:
    limits = UploadLimits(max_file_bytes=1000)
    assert upload_from_url(_url(b"x" * 1000), filename="f", param=PARAM, limits=limits)
    with pytest.raises(PayloadTooLarge, match=r"File 'big\.bin' exceeds"):
        upload_from_url(_url(b"x" * 1001), filename="big.bin", param=PARAM, limits=limits)


def test_the_size_message_matches_the_spec() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        check_file_size(10 * MIB + 1, "report.pdf", LIMITS)
    assert info.value.message == "File 'report.pdf' exceeds 10MB limit"


def test_the_filename_of_a_data_url_is_cleaned() -> None:
    name = "../../etc/pass\x00wd"
    upload = upload_from_url(_url(b"a"), filename=name, param=PARAM, limits=LIMITS)
    assert upload.filename == "passwd"


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("report.docx", "report.docx"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\evil.exe", "evil.exe"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("\u202etxt.exe", "txt.exe"),
        ("..", None),
        ("dir/", None),
        ("   ", None),
        (None, None),
        ("x" * 300, "x" * 255),
    ],
)
def test_clean_filename(name: str | None, clean: str | None) -> None:
    assert clean_filename(name) == clean


@given(filenames())
def test_a_cleaned_filename_has_no_folder_or_control_character(name: str) -> None:
    clean = clean_filename(name)
    if clean is not None:
        assert "/" not in clean
        assert "\\" not in clean
        assert clean not in {".", ".."}
        assert clean.isprintable() or not any(c in clean for c in "\x00\n\r\t")


@given(url_like_strings(), st.one_of(st.none(), filenames()))
def test_any_string_gives_an_upload_or_a_domain_error(url: str, filename: str | None) -> None:
    try:
        upload = upload_from_url(url, filename=filename, param=PARAM, limits=LIMITS)
    except NanobotError:
        return
    assert isinstance(upload.data, bytes)


@given(any_bytes(), mime_types())
def test_a_data_url_carries_its_bytes_exactly(data: bytes, mime: str) -> None:
    upload = upload_from_url(_url(data, mime), filename=None, param=PARAM, limits=LIMITS)
    assert upload.data == data


@given(data_urls())
def test_well_formed_data_urls_are_accepted(url: str) -> None:
    upload_from_url(url, filename=None, param=PARAM, limits=LIMITS)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=10_000))
def test_every_size_above_the_limit_raises_payload_too_large(size: int, limit: int) -> None:
    limits = UploadLimits(max_file_bytes=limit)
    if size > limit:
        with pytest.raises(PayloadTooLarge):
            check_file_size(size, "f", limits)
    else:
        check_file_size(size, "f", limits)


def test_too_many_files_are_refused() -> None:
    check_file_count(16, LIMITS)
    with pytest.raises(PayloadTooLarge, match="at most 16"):
        check_file_count(17, LIMITS)


def test_upload_from_form_cleans_the_filename() -> None:
    assert Upload.from_form(b"x", "/tmp/../a.txt", "").filename == "a.txt"
    assert Upload.from_form(b"x", "/tmp/../a.txt", "").declared_mime is None


# ---------------------------------------------------------------------------
# Text within bounds


def test_text_builder_keeps_lines_until_the_budget_and_marks_the_cut() -> None:
    text = TextBuilder(max_chars=12, deadline=float("inf"))
    assert text.add("hello")
    assert not text.add("wonderful world")
    assert not text.add("never seen")
    assert text.build() == ExtractedText(
        "hello\nwonder\n[... truncated: more than 12 characters]", truncated=True
    )


def test_text_builder_stops_when_out_of_time() -> None:
    text = TextBuilder.start(ExtractionLimits(time_budget_s=-1))
    assert text.out_of_time()
    assert text.build().text.endswith("[... truncated: time budget spent]")


def test_the_first_reason_to_stop_is_the_one_named() -> None:
    text = TextBuilder(max_chars=100, deadline=float("inf"))
    text.stop("first")
    text.stop("second")
    assert text.build().text == "[... truncated: first]"


def test_decode_text_drops_the_bom_and_cuts_long_text() -> None:
    assert decode_text(b"\xef\xbb\xbfhi", 10) == ExtractedText("hi")
    cut = decode_text(b"abcdef", 3)
    assert cut.truncated
    assert cut.text == "abc\n[... truncated: more than 3 characters]"


def test_a_cut_document_reaches_the_model_with_one_marker_saying_why() -> None:
    cut = decode_text(b"abcdef", 3)
    text = document_text(Document("a.txt", cut.text, "/m/a.txt", cut.truncated))
    assert text == "[File: a.txt]\nabc\n[... truncated: more than 3 characters]"


@given(
    st.one_of(
        st.text(alphabet="ABCDabcd0189+/=", max_size=24),
        st.text(max_size=12),
        st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
    )
)
def test_a_payload_is_accepted_exactly_when_base64_decode_accepts_it(payload: str) -> None:
    try:
        # The URL as a whole is stripped, so trailing whitespace never counts.
        expected: bytes | None = base64.b64decode(payload.rstrip(), validate=True)
    except ValueError:
        expected = None
    try:
        got: bytes | None = upload_from_url(
            f"data:;base64,{payload}", filename=None, param=PARAM, limits=LIMITS
        ).data
    except InvalidRequest:
        got = None
    assert got == expected


def test_a_payload_longer_than_one_slice_decodes_whole() -> None:
    data = bytes(range(256)) * 5000  # about 1.7 MB of base64, two slices
    assert upload_from_url(_url(data), filename=None, param=PARAM, limits=LIMITS).data == data
    padded = _url(data + b"x")
    middle = padded.index(",") + 1 + (1 << 20)
    broken = padded[:middle] + "=" + padded[middle + 1 :]
    with pytest.raises(InvalidRequest, match="not valid base64"):
        upload_from_url(broken, filename=None, param=PARAM, limits=LIMITS)
