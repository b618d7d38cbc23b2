"""Issue 3, hostile uploads: each is answered with the right status and error JSON, at
once, nothing of it is kept, and the server answers the next request as usual."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import anyio
import pytest

from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.acceptance.upload_kit import (
    CLIENT_ERROR,
    MEDIA,
    OCTETS,
    STORED_NAME,
    RecordingAgent,
    all_files,
    assert_error,
    assert_healthy,
    chat_body,
    data_url,
    file_part,
    form,
    harness,
    image_part,
    post_multipart,
    refused_then_healthy,
    socket_server_is_healthy,
    stored,
    text_part,
    token,
    with_limits,
)
from tests.files import (
    BOUNDARY,
    MIB,
    encode_multipart,
    make_docx,
    make_elf,
    make_many_members_zip,
    make_overlap_bomb,
    make_pdf,
    make_pe,
    make_png,
    make_zip_bomb,
)

UNSUPPORTED = "Unsupported file type"
REMOTE = (
    "Remote image URLs are not supported. "
    "Use base64 data URLs or upload files via multipart/form-data."
)


@pytest.fixture(name="recorder")
def _recorder() -> RecordingAgent:
    return RecordingAgent()


# ---------------------------------------------------------------------------
# Archives and documents built to exhaust the server

BOMBS: dict[str, Callable[[], bytes]] = {
    # 256 MiB of zeros behind each main part: over the bound on inflated size.
    **{f"bomb.{k}": partial(make_zip_bomb, k) for k in ("docx", "xlsx", "pptx")},
    # 64 MiB: under that bound, far over the compression ratio allowed.
    **{f"ratio.{k}": partial(make_zip_bomb, k, inflated_mib=64) for k in ("docx", "pptx")},
    # 400 directory entries sharing one compressed stream.
    **{f"overlap.{k}": partial(make_overlap_bomb, k) for k in ("docx", "xlsx", "pptx")},
    "members.xlsx": make_many_members_zip,
}


@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
@pytest.mark.parametrize("name", BOMBS)
async def test_a_zip_bomb_disguised_as_office_is_refused_with_a_4xx(
    config: Config, name: str, as_json: bool
) -> None:
    data = BOMBS[name]()
    body = chat_body(file_part(data_url(OCTETS, data), name)) if as_json else form((name, data))
    await refused_then_healthy(config, body, CLIENT_ERROR, f"File '{name}' ")


@pytest.mark.parametrize(
    ("pages", "seconds"),
    [(3000, 4.0), pytest.param(30_000, 7.0, marks=pytest.mark.slow, id="30000-9MB")],
)
async def test_a_pdf_of_thousands_of_pages_is_bounded(
    config: Config, recorder: RecordingAgent, pages: int, seconds: float
) -> None:
    """Truncated with a visible marker, or refused with a 4xx; either way, in seconds."""
    tok = token("pdf")
    data = make_pdf(tok, pages=pages)
    async with harness(recorder, config) as h:
        started = time.monotonic()
        with anyio.fail_after(seconds + 1):
            result = await post_multipart(h, *form(("huge.pdf", data)))
        elapsed = time.monotonic() - started
        if result.status == 200:
            doc = recorder.document("huge.pdf")
            assert doc.truncated
            assert doc.text.startswith(f"--- Page 1 ---\npage 1 line 0 {tok}")
            assert doc.text.splitlines()[-1].startswith("[... truncated: ")
            assert f"--- Page {pages} ---" not in doc.text
        else:
            assert 400 <= result.status < 500
            assert_error(result, result.status, "")
        await assert_healthy(h)
    assert elapsed < seconds


# ---------------------------------------------------------------------------
# Limits: bytes per file, files per request, bytes per request


async def test_a_file_of_limit_plus_one_byte_is_refused_naming_it(config: Config) -> None:
    small = with_limits(config, max_file_mb=1)
    over = b"a" * (MIB + 1)
    await refused_then_healthy(
        small, form(("big.txt", over)), 413, "File 'big.txt' exceeds 1MB limit"
    )
    as_file = chat_body(file_part(data_url("text/plain", over), "big.txt"))
    await refused_then_healthy(small, as_file, 413, "File 'big.txt' exceeds 1MB limit")
    as_image = chat_body(image_part(data_url("image/png", over)))
    await refused_then_healthy(small, as_image, 413, "File 'upload' exceeds 1MB limit")


async def test_a_file_of_exactly_the_limit_is_accepted(
    config: Config, recorder: RecordingAgent
) -> None:
    exact = b"a" * MIB
    async with harness(recorder, with_limits(config, max_file_mb=1)) as h:
        result = await post_multipart(h, *form(("exact.txt", exact)))
        assert result.ok, result.body[:300]
        as_json = await h.send(chat_body(file_part(data_url("text/plain", exact), "exact.txt")))
        assert as_json.ok, as_json.body[:300]
    assert [p.stat().st_size for p in stored(config.workspace)] == [MIB, MIB]


async def test_one_file_more_than_max_files_is_refused(
    config: Config, recorder: RecordingAgent
) -> None:
    limit = config.api.max_files
    files = [(f"n{n}.txt", f"note {n}".encode()) for n in range(limit + 1)]
    await refused_then_healthy(config, form(*files), 413, "Too many files")
    parts = [file_part(data_url("text/plain", data), name) for name, data in files]
    await refused_then_healthy(config, chat_body(*parts), 413, "Too many files")
    async with harness(recorder, config) as h:
        assert (await post_multipart(h, *form(*files[:limit]))).ok
        assert (await h.send(chat_body(*parts[:limit]))).ok
    assert [len(turn.documents) for turn in recorder.turns] == [limit, limit]


FILE_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n'
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
    f'name="files"; filename="big.bin"\r\nContent-Type: {OCTETS}\r\n\r\n'
).encode()
FORM = f"multipart/form-data; boundary={BOUNDARY}"
CHUNKED = {
    # A file crossing api.maxFileMb, the body far under api.maxRequestMb.
    "file-over-limit": (FORM, FILE_HEAD, {"max_file_mb": 1}, "File 'big.bin' exceeds 1MB limit"),
    # Bodies crossing api.maxRequestMb with no Content-Length to tell it up front.
    "form-over-request-limit": (
        FORM,
        FILE_HEAD,
        {"max_request_mb": 1},
        "Request body exceeds 1MB limit",
    ),
    "json-over-request-limit": (
        "application/json",
        b'{"messages": [{"role": "user", "content": "',
        {"max_request_mb": 1},
        "Request body exceeds 1MB limit",
    ),
}


@pytest.mark.parametrize("case", CHUNKED)
async def test_a_chunked_body_over_a_limit_is_refused_before_its_end(
    config: Config, case: str
) -> None:
    """Sent with no Content-Length, from a generator with 48 MiB to give: the 413 comes
    while most of it was never asked for."""
    content_type, head, limits, message = CHUNKED[case]
    total = 48 * MIB
    given = 0
    answered = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal given
        given += len(head)
        yield head
        chunk = b"a" * (64 * 1024)
        while given < total:
            if given >= 4 * MIB and not answered.is_set():
                # Far past the limit: give the server time to answer before writing on.
                # (Hypercorn closes the connection right after its 413; aiohttp, when
                # its write fails first, reports the reset instead of the answer.)
                with anyio.move_on_after(3):
                    await answered.wait()
            if answered.is_set():
                return
            given += len(chunk)
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with (
        running_server(build(with_limits(config, **limits))) as server,
        aiohttp.ClientSession() as http,
    ):
        with anyio.fail_after(5):
            url = f"{server.base_url}/chat/completions"
            headers = {"Content-Type": content_type}
            async with http.post(url, data=body(), headers=headers) as response:
                given_when_answered = given
                answered.set()
                assert "Content-Length" not in response.request_info.headers
                assert response.headers["Content-Type"] == "application/json"
                payload = await response.json()
        assert response.status == 413
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": 413}
        assert payload == {"error": error}
        assert given_when_answered <= 4 * MIB + len(head)  # the rest was never asked for
        await socket_server_is_healthy(server, http)
    assert stored(config.workspace) == []


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=b"])
async def test_a_declared_content_length_over_max_request_is_refused_at_once(
    config: Config, content_type: str
) -> None:
    declared = config.api.max_request_mb * MIB + 1
    answered = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"messages": ['
        await answered.wait()  # the rest never comes; the answer must not wait for it

    headers = {"Content-Type": content_type, "Content-Length": str(declared)}
    async with running_server(build(config)) as server, aiohttp.ClientSession() as http:
        with anyio.fail_after(3):
            url = f"{server.base_url}/chat/completions"
            async with http.post(url, data=body(), headers=headers) as response:
                answered.set()
                assert response.status == 413
                payload = await response.json()
        assert payload["error"]["message"] == "Request body exceeds 64MB limit"
        assert payload["error"]["code"] == 413
        await socket_server_is_healthy(server, http)


# ---------------------------------------------------------------------------
# Bytes that are not what they claim, or nothing at all


@pytest.mark.parametrize(
    "payload",
    ["@@@@", "abc", "YWJj=YWJj", "YWJjZA=", "ümlaut=="],
    ids=["symbols", "short", "inner-padding", "bad-padding", "non-ascii"],
)
async def test_invalid_base64_is_a_bad_request_naming_the_part(
    config: Config, payload: str
) -> None:
    url = f"data:image/png;base64,{payload}"
    result = await refused_then_healthy(
        config, chat_body(text_part("see"), image_part(url)), 400, "messages[0].content[1]"
    )
    assert result.error is not None
    assert result.error.param == "messages[0].content[1].image_url.url"
    in_file = chat_body(text_part("see"), file_part(url, "x.png"))
    result = await refused_then_healthy(config, in_file, 400, "messages[0].content[1]")
    assert result.error is not None
    assert result.error.param == "messages[0].content[1].file.file_data"


@pytest.mark.parametrize("scheme", ["http", "https", "HTTPS"])
async def test_a_remote_url_is_refused_and_never_fetched(config: Config, scheme: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/cat.png"
        for part in (image_part(url), file_part(url, "cat.png")):
            await refused_then_healthy(config, chat_body(text_part("look"), part), 400, REMOTE)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected


async def test_a_declared_mime_that_lies_is_overruled_by_the_bytes(
    config: Config, recorder: RecordingAgent
) -> None:
    tok = {kind: token(kind) for kind in ("docx", "pdf", "png")}
    docx, pdf, png = make_docx(tok["docx"]), make_pdf(tok["pdf"]), make_png(tok["png"])
    async with harness(recorder, config) as h:
        as_json = await h.send(
            chat_body(
                image_part(data_url("image/png", docx)),
                file_part(data_url("application/pdf", png), "scan.pdf"),
            )
        )
        assert as_json.ok, as_json.body[:300]
        turn = recorder.last
        assert [doc.name for doc in turn.documents] == ["upload"]
        assert tok["docx"] in turn.documents[0].text
        assert Path(turn.documents[0].path).suffix == ".docx"
        assert [(i.mime, i.data) for i in turn.images] == [("image/png", png)]
        files = [("files", "photo.png", pdf, "image/png")]
        as_form = await post_multipart(h, *encode_multipart({"message": "m"}, files))
        assert as_form.ok, as_form.body[:300]
        assert recorder.last.images == ()
        assert tok["pdf"] in recorder.document("photo.png").text
        assert Path(recorder.document("photo.png").path).suffix == ".pdf"
        called = len(recorder.turns)
        lying_elf = chat_body(file_part(data_url("text/plain", make_elf()), "notes.txt"))
        assert_error(await h.send(lying_elf), 415, UNSUPPORTED)
        assert len(recorder.turns) == called  # a refused turn never reaches the agent
        await assert_healthy(h)


@pytest.mark.parametrize("name", ["tool", "setup.exe"])
@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
async def test_an_executable_is_unsupported(config: Config, name: str, as_json: bool) -> None:
    data = make_elf() if name == "tool" else make_pe()
    if as_json:
        body = chat_body(file_part(data_url(OCTETS, data), name))
        await refused_then_healthy(config, body, 415, UNSUPPORTED)
    else:
        await refused_then_healthy(config, form((name, data)), 415, UNSUPPORTED)


async def test_an_empty_file_is_a_bad_request(config: Config) -> None:
    empty = "File 'empty.txt' is empty"
    await refused_then_healthy(config, form(("empty.txt", b"")), 400, empty)
    body = chat_body(file_part("data:text/plain;base64,", "empty.txt"))
    await refused_then_healthy(config, body, 400, empty)


async def test_one_bad_file_refuses_the_whole_request_and_keeps_nothing(
    config: Config, recorder: RecordingAgent
) -> None:
    body = form(("good.docx", make_docx(token("good"))), ("bad.bin", make_pe()))
    async with harness(recorder, config) as h:
        assert_error(await post_multipart(h, *body), 415, UNSUPPORTED)
        assert recorder.turns == []
        assert list(all_files(config.workspace)) == []
        await assert_healthy(h)


# ---------------------------------------------------------------------------
# File names that try to become paths


def hostile_names(tok: str) -> Iterator[str]:
    yield f"../../../../../../../../tmp/evil-{tok}.txt"
    yield f"..\\..\\..\\evil-{tok}.txt"
    yield f"../evil\x00-{tok}.txt"
    yield f"/etc/evil-{tok}.txt"
    yield "\x00"
    yield ".."


@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json"])
async def test_a_file_name_never_becomes_a_path(
    config: Config, recorder: RecordingAgent, tmp_path: Path, as_json: bool
) -> None:
    tok = token("evil")
    names = list(hostile_names(tok))
    async with harness(recorder, config) as h:
        for name in names:
            data = f"content {tok}".encode()
            if as_json:
                result = await h.send(chat_body(file_part(data_url("text/plain", data), name)))
            else:
                files = [("files", name, data, "text/plain")]
                result = await post_multipart(h, *encode_multipart({"message": "m"}, files))
            # Accepted under a cleaned name, or refused cleanly: never a fault.
            if result.status != 200:
                assert_error(result, 400, "")
                continue
            [doc] = recorder.last.documents
            assert tok in doc.text
            assert not {"/", "\\", "\x00"} & set(doc.name), doc.name
            assert STORED_NAME.fullmatch(Path(doc.path).name)
        await assert_healthy(h)
    media = config.workspace / MEDIA
    assert {p.parent for p in all_files(tmp_path)} <= {media}
    assert not [p for p in all_files(tmp_path) if tok in p.name]
    for place in (Path("/tmp"), Path("/etc"), tmp_path.parent, Path.cwd(), Path.cwd().parent):
        assert not (place / f"evil-{tok}.txt").exists()
    for sidecar in media.glob("*.json"):
        original = json.loads(sidecar.read_text())["original_name"]
        assert original is None or not {"/", "\\", "\x00"} & set(original), original
