from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.http.wire import parse_chat_json, parse_form
from nanobot_api.domain.attachments import REMOTE_URL_REFUSED, Upload, UploadLimits
from nanobot_api.domain.errors import InvalidRequest, NanobotError, PayloadTooLarge
from nanobot_api.domain.requests import DEFAULT_UPLOAD_PROMPT, SINGLE_USER_MESSAGE

LIMITS = UploadLimits(max_file_bytes=1000, max_files=2)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": json_values}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": json_values})}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("file"),
            "file": st.dictionaries(st.sampled_from(["file_data", "filename"]), json_values),
        }
    ),
    st.dictionaries(st.text(), json_values),
)
chat_bodies = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system"]),
                    "content": st.one_of(json_values, st.lists(part, max_size=3)),
                }
            ),
            max_size=2,
        )
    },
    optional={
        "model": json_values,
        "session_id": json_values,
        "stream": json_values,
        "stream_options": st.one_of(
            json_values, st.fixed_dictionaries({"include_usage": json_values})
        ),
    },
)


def user(content: object, **fields: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], **fields}


def data_url(data: bytes, mime: str = "text/plain") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@given(st.one_of(json_values, chat_bodies))
def test_any_json_body_is_a_chat_request_or_a_domain_error(body: object) -> None:
    try:
        request = parse_chat_json(body, LIMITS)
    except NanobotError as exc:
        refused: NanobotError | None = exc
    else:
        refused = None
        assert isinstance(request.text, str)
        assert str(request.session).startswith("api:")
    if refused is not None:
        assert refused.message


def test_a_plain_message_with_all_fields() -> None:
    request = parse_chat_json(
        user(
            "hi",
            model="m",
            session_id="s1",
            stream=True,
            stream_options={"include_usage": True},
            temperature=0.2,
            tools=[],
        ),
        LIMITS,
    )
    assert (request.text, str(request.session), request.model) == ("hi", "api:s1", "m")
    assert (request.stream, request.include_usage) == (True, True)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "hi"},
        {"messages": []},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {"messages": [{"role": "system", "content": "a"}]},
        {"messages": [{"role": "assistant", "content": "a"}]},
        {"messages": ["hi"]},
    ],
)
def test_anything_but_one_user_message_is_refused(body: object) -> None:
    with pytest.raises(InvalidRequest, match=SINGLE_USER_MESSAGE):
        parse_chat_json(body, LIMITS)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            user([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": 5}}]),
            "messages[0].content[1].image_url.url",
            "must be a string",
        ),
        (user([{"type": "audio"}]), "messages[0].content[0].type", "must be one of"),
        (user(5), "messages[0].content", "must be a string or a list"),
        (user("x", stream="yes"), "stream", "must be a boolean"),
        (user("x", model=3), "model", "must be a string"),
        (user("x", session_id=""), "session_id", "1-256"),
        (user("x", stream_options={"include_usage": 1}), "stream_options.include_usage", "boolean"),
        (
            user([{"type": "file", "file": {"filename": "a.txt"}}]),
            "messages[0].content[0].file.file_data",
            "required",
        ),
    ],
)
def test_a_wrong_field_is_named(body: object, param: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        parse_chat_json(body, LIMITS)
    assert caught.value.param == param


def test_remote_urls_are_refused_and_never_fetched() -> None:
    body = user([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_json(body, LIMITS)
    assert caught.value.message == REMOTE_URL_REFUSED


def test_parts_become_text_and_uploads() -> None:
    body = user(
        [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": data_url(b"abc", "image/png")}},
            {"type": "file", "file": {"file_data": data_url(b"notes"), "filename": "n.txt"}},
        ]
    )
    request = parse_chat_json(body, LIMITS)
    assert request.text == "look"
    assert request.uploads == (
        Upload(b"abc", None, "image/png"),
        Upload(b"notes", "n.txt", "text/plain"),
    )


def test_files_without_text_get_the_default_prompt() -> None:
    request = parse_chat_json(
        user([{"type": "file", "file": {"file_data": data_url(b"x")}}]), LIMITS
    )
    assert request.text == DEFAULT_UPLOAD_PROMPT


def test_too_many_and_too_large_files_are_refused() -> None:
    part = {"type": "file", "file": {"file_data": data_url(b"x"), "filename": "a.txt"}}
    with pytest.raises(PayloadTooLarge, match="at most 2"):
        parse_chat_json(user([part, part, part]), LIMITS)
    big = {"type": "file", "file": {"file_data": data_url(b"x" * 1001), "filename": "big.txt"}}
    with pytest.raises(PayloadTooLarge, match=r"File 'big\.txt' exceeds"):
        parse_chat_json(user([big]), LIMITS)


def test_invalid_base64_is_refused() -> None:
    body = user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}])
    with pytest.raises(InvalidRequest, match="not valid base64"):
        parse_chat_json(body, LIMITS)


def test_form_fields_become_a_request() -> None:
    request = parse_form(
        {"message": "", "session_id": "f", "stream": "yes"}, (Upload(b"x", "a.txt"),)
    )
    assert (request.text, str(request.session), request.stream) == (
        DEFAULT_UPLOAD_PROMPT,
        "api:f",
        True,
    )
    with pytest.raises(InvalidRequest, match="stream"):
        parse_form({"message": "hi", "stream": "maybe"}, ())
