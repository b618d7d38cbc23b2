"""What a conversation request may contain: the domain's rules over parsed values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.requests import (
    DEFAULT_UPLOAD_PROMPT,
    NAME_A_SESSION,
    SEND_ONE_MESSAGE,
    SINGLE_USER_MESSAGE,
    HistoryMode,
    auxiliary_conversation,
    auxiliary_text,
    check_text,
    turn_position,
    turn_text,
)

roles = st.lists(
    st.sampled_from(["user", "assistant", "system", "developer", "tool", None]), max_size=8
)
modes = st.sampled_from(["reject", "latest"])


@given(roles, modes, st.booleans())
def test_any_roles_give_a_turn_or_results_or_invalid_request(
    given_roles: list[str | None], mode: HistoryMode, named: bool
) -> None:
    try:
        at = turn_position(given_roles, mode, named)
    except InvalidRequest:
        return
    assert all(given_roles[i] in ("system", "developer") for i in at.instructions)
    if at.continues:
        assert at.index == -1
        assert at.results
        assert all(given_roles[i] == "tool" for i in at.results)
        assert at.results[-1] == len(given_roles) - 1
        return
    assert given_roles[at.index] == "user"
    assert at.index == len(given_roles) - 1
    if mode == "reject":
        assert given_roles == [*(given_roles[i] for i in at.instructions), "user"]


def test_reject_mode_takes_exactly_one_user_message_and_names_the_fix() -> None:
    for wrong in (["user", "assistant", "user"], ["assistant"], ["user", "system"], ["system"]):
        with pytest.raises(InvalidRequest) as refused:
            turn_position(wrong, "reject", named=True)
        assert refused.value.message == SEND_ONE_MESSAGE
        assert refused.value.message.startswith(SINGLE_USER_MESSAGE + ": ")
        assert 'api.history = "latest"' in refused.value.message


def test_system_and_developer_messages_lead_the_turn_in_both_modes() -> None:
    at = turn_position(["system", "developer", "user"], "reject", named=False)
    assert (at.index, at.instructions, at.continues) == (2, (0, 1), False)
    at = turn_position(["system", "user"], "latest", named=False)
    assert (at.index, at.instructions) == (1, (0,))


def test_tool_messages_answer_the_paused_turn() -> None:
    alone = turn_position(["system", "tool", "tool"], "reject", named=False)
    assert (alone.continues, alone.results, alone.instructions) == (True, (1, 2), (0,))
    resent = turn_position(["user", "assistant", "tool"], "reject", named=False)
    assert (resent.continues, resent.results) == (True, (2,))
    latest = turn_position(["system", "user", "assistant", "tool"], "latest", named=True)
    assert (latest.continues, latest.results, latest.instructions) == (True, (3,), (0,))
    with pytest.raises(InvalidRequest, match=SINGLE_USER_MESSAGE):
        turn_position(["user", "tool"], "reject", named=True)


def test_latest_mode_needs_a_user_turn_last_and_a_session_for_a_conversation() -> None:
    with pytest.raises(InvalidRequest, match="The last message must be a user message"):
        turn_position(["user", "assistant"], "latest", named=True)
    with pytest.raises(InvalidRequest) as refused:
        turn_position(["user", "assistant", "user"], "latest", named=False)
    assert refused.value.message == NAME_A_SESSION
    assert refused.value.param == "session_id"
    assert turn_position(["user"], "latest", named=False).index == 0


@given(st.lists(st.text(max_size=5), max_size=4), st.integers(0, 3))
def test_words_or_the_default_prompt_when_files_come_without_words(
    texts: list[str], uploads: int
) -> None:
    text = turn_text(texts, uploads)
    joined = "\n".join(texts)
    if uploads and not joined.strip():
        assert text == DEFAULT_UPLOAD_PROMPT
    else:
        assert text == joined


def test_whitespace_and_a_file_is_the_default_prompt_however_it_came() -> None:
    """JSON content parts and a multipart message field reach the same rule."""
    assert turn_text(["  "], 1) == DEFAULT_UPLOAD_PROMPT  # multipart: the message field
    assert turn_text([" ", "\t"], 2) == DEFAULT_UPLOAD_PROMPT  # JSON: its text parts
    assert turn_text(["  "], 0) == "  "


@given(st.lists(st.tuples(st.one_of(st.text(max_size=10), st.integers()), st.text()), max_size=5))
def test_an_auxiliary_conversation_is_plain_messages_or_invalid_request(
    messages: list[tuple[object, str]],
) -> None:
    try:
        conversation = auxiliary_conversation(messages)
    except InvalidRequest:
        return
    assert [(m.role, m.content) for m in conversation] == messages
    users = [text for role, text in messages if role == "user"]
    assert auxiliary_text(conversation) == (users[-1] if users else "")


@given(st.text())
def test_text_is_kept_whole_or_refused_for_a_lone_surrogate(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        with pytest.raises(InvalidRequest, match="lone surrogate"):
            check_text(text, "p")
    else:
        assert check_text(text, "p") == text
