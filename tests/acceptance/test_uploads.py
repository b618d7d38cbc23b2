"""Issue 3, what a user gets: real files of every supported kind reach the agent
through both body kinds and through the openai SDK, and are kept under media/api."""

from __future__ import annotations

import re

import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.acceptance.upload_kit import (
    MEDIA,
    RecordingAgent,
    all_files,
    assert_image,
    assert_saved,
    chat_body,
    data_url,
    file_part,
    harness,
    image_part,
    post_multipart,
    stored,
    text_part,
    token,
)
from tests.files import (
    encode_multipart,
    make_docx,
    make_gif,
    make_jpeg,
    make_pdf,
    make_png,
    make_pptx,
    make_text,
    make_webp,
    make_xlsx,
)

PNG, JPEG, GIF, WEBP = "image/png", "image/jpeg", "image/gif", "image/webp"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


@pytest.fixture(name="recorder")
def _recorder() -> RecordingAgent:
    return RecordingAgent()


async def test_json_parts_of_every_kind_mixed_with_text_reach_the_agent(
    config: Config, recorder: RecordingAgent
) -> None:
    t = {kind: token(kind) for kind in ("png", "jpeg", "gif", "webp", "pdf", "docx", "xlsx")}
    t |= {kind: token(kind) for kind in ("pptx", "md", "png-as-file")}
    images = [
        (make_png(t["png"]), PNG),
        (make_jpeg(t["jpeg"]), JPEG),
        (make_gif(t["gif"]), GIF),
        (make_webp(t["webp"]), WEBP),
    ]
    documents = {
        "report.pdf": (make_pdf(t["pdf"], pages=2), PDF),
        "report.docx": (make_docx(t["docx"]), DOCX),
        "table.xlsx": (make_xlsx(t["xlsx"]), XLSX),
        "deck.pptx": (make_pptx(t["pptx"]), PPTX),
        "notes.md": (make_text(t["md"]), "text/markdown;charset=utf-8"),
    }
    # An image may come as a `file` part too: the kind is read from the bytes.
    late_png = make_png(t["png-as-file"])
    body = chat_body(
        text_part("Compare these"),
        *(image_part(data_url(mime, data)) for data, mime in images[:2]),
        text_part("and these"),
        *(image_part(data_url(mime, data)) for data, mime in images[2:]),
        *(file_part(data_url(mime, data), name) for name, (data, mime) in documents.items()),
        file_part(data_url(PNG, late_png), "late.png"),
        session_id="mixed",
    )
    async with harness(recorder, config) as h:
        result = await h.send(body)

    assert result.ok, result.body[:300]
    assert result.text == "got 5 images, 5 documents"
    assert result.session_id == "mixed"
    turn = recorder.last
    assert turn.session.session_id == "mixed"
    assert turn.text == "Compare these\nand these"
    for image, (data, mime) in zip(turn.images, [*images, (late_png, PNG)], strict=True):
        assert_image(image, data, mime, config.workspace)
    assert turn.images[-1].filename == "late.png"
    assert [doc.name for doc in turn.documents] == list(documents)
    for kind, name in zip(("pdf", "docx", "xlsx", "pptx", "md"), documents, strict=True):
        doc = recorder.document(name)
        assert t[kind] in doc.text
        assert not doc.truncated
        assert_saved(config.workspace, doc.path, documents[name][0], name)
    # The structure a reader needs survives extraction.
    assert "--- Page 2 ---" in recorder.document("report.pdf").text
    assert f"r1c0\tr1c1\tcell-{t['docx']}" in recorder.document("report.docx").text
    assert "## Sheet: Data" in recorder.document("table.xlsx").text
    assert f"row0\t0\t{t['xlsx']}-0-0" in recorder.document("table.xlsx").text
    assert len(stored(config.workspace)) == 10


async def test_multipart_message_files_and_session_id_reach_the_agent(
    config: Config, recorder: RecordingAgent
) -> None:
    t = {kind: token(kind) for kind in ("docx", "xlsx", "pptx", "pdf", "png", "csv")}
    png = make_png(t["png"])
    files = [
        ("files", "report.docx", make_docx(t["docx"]), DOCX),
        ("files", "budget.xlsx", make_xlsx(t["xlsx"]), XLSX),
        ("files", "deck.pptx", make_pptx(t["pptx"]), PPTX),
        ("files", "paper.pdf", make_pdf(t["pdf"]), PDF),
        ("files", "photo.png", png, PNG),
        ("files", "rows.csv", f"name,token\nalpha,{t['csv']}\n".encode(), "text/csv"),
    ]
    fields = {"message": "Summarize this", "session_id": "form-session"}
    async with harness(recorder, config) as h:
        result = await post_multipart(h, *encode_multipart(fields, files))

    assert result.ok, result.body[:300]
    assert result.text == "got 1 images, 5 documents"
    assert result.session_id == "form-session"
    turn = recorder.last
    assert turn.text == "Summarize this"
    assert turn.session.session_id == "form-session"
    assert_image(turn.images[0], png, PNG, config.workspace)
    assert turn.images[0].filename == "photo.png"
    sent = {name: data for _, name, data, _ in files}
    names = ["report.docx", "budget.xlsx", "deck.pptx", "paper.pdf", "rows.csv"]
    assert [doc.name for doc in turn.documents] == names
    for kind, name in zip(("docx", "xlsx", "pptx", "pdf", "csv"), names, strict=True):
        doc = recorder.document(name)
        assert t[kind] in doc.text, doc.text[:500]
        assert_saved(config.workspace, doc.path, sent[name], name)
    assert "--- Slide 2 ---" in recorder.document("deck.pptx").text
    assert f"tcell-{t['pptx']}" in recorder.document("deck.pptx").text
    assert "--- Page 1 ---" in recorder.document("paper.pdf").text


async def test_multipart_files_without_a_message_get_the_default_prompt(
    config: Config, recorder: RecordingAgent
) -> None:
    tok = token("txt")
    body, content_type = encode_multipart({}, [("files", "a.txt", make_text(tok), "text/plain")])
    async with harness(recorder, config) as h:
        result = await post_multipart(h, body, content_type)
    assert result.ok, result.body[:300]
    assert recorder.last.text == "Please analyze the uploaded file(s)."
    assert tok in recorder.document("a.txt").text
    assert result.session_id == "default"


async def test_a_multipart_media_type_in_capitals_is_still_a_form(
    config: Config, recorder: RecordingAgent
) -> None:
    """Media types are case-insensitive (RFC 9110, 8.3.1)."""
    tok = token("txt")
    body, content_type = encode_multipart(
        {"message": "hi"}, [("files", "a.txt", make_text(tok), "text/plain")]
    )
    async with harness(recorder, config) as h:
        result = await post_multipart(
            h, body, content_type.replace("multipart/form-data", "Multipart/Form-Data")
        )
    assert result.ok, result.body[:300]
    assert tok in recorder.document("a.txt").text


async def test_the_echo_agent_reports_each_attachment(config: Config) -> None:
    png = make_png(token("png"))
    docx = make_docx(token("docx"))
    files = [("files", "photo.png", png, PNG), ("files", "report.docx", docx, DOCX)]
    async with harness(EchoAgent(), config) as h:
        form = await post_multipart(h, *encode_multipart({"message": "Summarize this"}, files))
        as_json = await h.send(
            chat_body(
                text_part("Summarize this"),
                image_part(data_url(PNG, png)),
                file_part(data_url(DOCX, docx), "report.docx"),
            )
        )
        streamed = await h.chat("Look", files=[("photo.png", png)], stream=True)

    # All three turns share the default session, so the later ones recall the first.
    report = re.compile(
        rf"echo: Summarize this \[image/png {len(png)} B\] \[report\.docx: (\d+) chars\]"
        r"( \(turn 2; earlier: \"Summarize this.*\"\))?"
    )
    form_match = report.fullmatch(form.text)
    json_match = report.fullmatch(as_json.text)
    assert form_match, form.text
    assert json_match, as_json.text
    assert int(form_match[1]) > 0
    assert form_match[1] == json_match[1]  # the same bytes, the same text
    assert streamed.ok
    assert streamed.streamed
    assert streamed.text.startswith(f"echo: Look [image/png {len(png)} B] (turn 3; earlier: ")


async def test_saved_files_get_fresh_unguessable_names_never_the_clients(
    config: Config, recorder: RecordingAgent
) -> None:
    first, second = make_docx(token("one")), make_docx(token("two"))
    files = [("files", "report.docx", first, DOCX), ("files", "report.docx", second, DOCX)]
    async with harness(recorder, config) as h:
        result = await post_multipart(h, *encode_multipart({"message": "two"}, files))
        again = await h.send(chat_body(file_part(data_url(DOCX, first), "report.docx")))
    assert result.ok
    assert again.ok
    paths = [doc.path for turn in recorder.turns for doc in turn.documents]
    assert len(set(paths)) == 3
    for path, data in zip(paths, [first, second, first], strict=True):
        assert_saved(config.workspace, path, data, "report.docx")
    media = config.workspace / MEDIA
    assert {p.parent for p in all_files(config.workspace)} == {media}
    assert not any(p.name == "report.docx" for p in all_files(config.workspace))


# ---------------------------------------------------------------------------
# Through the openai SDK, on a real socket


async def test_the_openai_sdk_sends_an_image_and_a_file_that_reach_the_agent(
    config: Config, recorder: RecordingAgent
) -> None:
    png = make_png(token("png"), size=(32, 24))
    doc_token = token("docx")
    docx = make_docx(doc_token)
    async with (
        running_server(build(config, agent=recorder)) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0) as client,
    ):
        reply = await client.chat.completions.create(
            model="recorder",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {"type": "image_url", "image_url": {"url": data_url(PNG, png)}},
                        {
                            "type": "file",
                            "file": {"file_data": data_url(DOCX, docx), "filename": "r.docx"},
                        },
                    ],
                }
            ],
            extra_body={"session_id": "sdk"},
        )
    assert reply.choices[0].message.content == "got 1 images, 1 documents"
    turn = recorder.last
    assert turn.text == "What is in this image?"
    assert turn.session.session_id == "sdk"
    assert_image(turn.images[0], png, PNG, config.workspace)
    assert doc_token in recorder.document("r.docx").text


async def test_the_openai_sdk_gets_the_echo_agents_report(config: Config) -> None:
    png = make_png(token("png"))
    async with (
        running_server(build(config)) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0) as client,
    ):
        reply = await client.chat.completions.create(
            model="nanobot-echo",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe"},
                        {"type": "image_url", "image_url": {"url": data_url(PNG, png)}},
                    ],
                }
            ],
        )
    assert reply.choices[0].message.content == f"echo: Describe [image/png {len(png)} B]"
    [saved] = stored(config.workspace)
    assert saved.read_bytes() == png
