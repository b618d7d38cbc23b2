from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.sessions import (
    SessionHeaders,
    SessionKey,
    api_session,
    requested_session,
    validate_session_id,
)

printable_ids = st.text(min_size=1, max_size=256).filter(str.isprintable)


def test_no_session_id_is_the_shared_default_session() -> None:
    assert str(api_session(None)) == "api:default"
    assert api_session("default") == api_session(None)


def test_a_session_id_names_its_api_session() -> None:
    assert str(api_session("my-session")) == "api:my-session"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (5, "must be a string"),
        ("", "1-256 characters"),
        ("x" * 257, "1-256 characters"),
        ("a\nb", "control characters"),
        ("tab\there", "control characters"),
        ("nul\x00", "control characters"),
    ],
)
def test_bad_session_ids_are_refused_naming_the_field(value: object, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as caught:
        validate_session_id(value)
    assert caught.value.param == "session_id"


@given(printable_ids, printable_ids)
def test_distinct_session_ids_never_share_a_key(first: str, second: str) -> None:
    if first != second:
        assert api_session(first) != api_session(second)
        assert str(api_session(first)) != str(api_session(second))


@given(st.one_of(st.none(), st.text(), st.integers(), st.booleans(), st.lists(st.text())))
def test_any_value_is_a_session_key_or_invalid_request(value: object) -> None:
    try:
        key = api_session(value)
    except InvalidRequest:
        return
    assert key.channel == "api"
    assert SessionKey.parse(str(key)) == key


def headers_of(session: str | None, openwebui: str | None, chat: str | None) -> SessionHeaders:
    """The session ids an HTTP request's headers carry, in the HTTP adapter's order."""
    chat_ids = [("X-OpenWebUI-Chat-Id", openwebui), ("X-Chat-Id", chat)]
    return SessionHeaders(
        None if session is None else ("X-Session-Id", session),
        tuple((name, value) for name, value in chat_ids if value is not None),
    )


header_values = st.one_of(st.none(), st.text(max_size=300))


@given(
    st.one_of(st.none(), st.text(max_size=300), st.integers()),
    header_values,
    header_values,
    header_values,
)
def test_any_mix_of_body_field_and_headers_is_one_key_or_invalid_request(
    body: object, session: str | None, openwebui: str | None, chat: str | None
) -> None:
    try:
        key = requested_session(body, headers_of(session, openwebui, chat))
    except InvalidRequest:
        return
    if key is None:
        assert (body, session, openwebui, chat) == (None, None, None, None)
        return
    expected = (
        body if body is not None else next(v for v in (session, openwebui, chat) if v is not None)
    )
    assert key == api_session(expected)


@given(printable_ids, printable_ids, st.sampled_from(["session", "openwebui", "chat"]))
def test_distinct_header_values_never_share_a_session(first: str, second: str, which: str) -> None:
    def key(value: str) -> SessionKey | None:
        given = {"session": (value, None, None), "openwebui": (None, value, None)}
        return requested_session(None, headers_of(*given.get(which, (None, None, value))))

    if first != second:
        assert key(first) != key(second)
