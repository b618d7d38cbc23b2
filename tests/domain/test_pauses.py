"""A resend of a paused turn is checked against it: its calls must be the turn's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.errors import InvalidRequest, NanobotError
from nanobot_api.domain.pauses import check_resent

ids = st.text(max_size=12)


def paused(*call_ids: str, at: float | None = 1.0) -> TurnRecord:
    calls = tuple(ToolCall(i, "get_weather", "{}") for i in call_ids)
    return TurnRecord((Message.user("weather?"), Message.assistant(None, calls)), at)


def test_a_resend_of_the_paused_turns_own_calls_passes() -> None:
    check_resent(paused("call_a", "call_b"), ("call_b", "call_a"), "messages[1]")
    check_resent(paused("call_a"), (), "messages[1]")  # a resend that names no call


def test_a_call_the_paused_turn_did_not_make_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest, match="'call_x' that the paused turn") as refused:
        check_resent(paused("call_a"), ("call_a", "call_x"), "messages[1]")
    assert refused.value.param == "messages[1]"
    assert "it made: call_a" in refused.value.message


@given(st.lists(ids, max_size=4), st.lists(ids, max_size=4), st.none() | st.floats())
def test_any_resend_passes_or_is_refused_with_a_nanobot_error(
    made: list[str], resent: list[str], at: float | None
) -> None:
    try:
        check_resent(paused(*made, at=at), tuple(resent), "messages[1]")
    except NanobotError:
        assert at is not None
        assert not set(resent) <= set(made)
