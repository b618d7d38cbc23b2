"""Rules of responses and conversations: continuation, metadata, pages, items, tool steps."""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.conversations import (
    ConversationItem,
    check_metadata,
    check_page,
    history_items,
    page_after,
)
from nanobot_api.domain.errors import ConversationConflict, InvalidRequest, NanobotError
from nanobot_api.domain.responses import (
    RESPONSE_STATUSES,
    ResponseRecord,
    check_continuation,
    check_response_id,
    forgettable,
    lost_its_run,
    tool_progress,
)
from nanobot_api.domain.sessions import SessionKey

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=70), inner, max_size=20)
    ),
    max_leaves=30,
)
SESSION = SessionKey("api", "s")


def previous(**changes: object) -> ResponseRecord:
    base = ResponseRecord(
        "resp_1", SESSION, "m", 0.0, status="completed", output_text="a", turn_no=2
    )
    return attrs.evolve(base, **changes)


def test_the_latest_response_continues_its_session() -> None:
    assert check_continuation(previous(), None, 2, "a") == SESSION
    assert check_continuation(previous(), SESSION, 2, "a") == SESSION


@pytest.mark.parametrize(
    ("turns", "answer"),
    [(3, "a"), (2, "another answer (a branch switch)"), (1, "a")],
)
def test_a_response_that_is_no_longer_the_latest_turn_conflicts(turns: int, answer: str) -> None:
    with pytest.raises(ConversationConflict, match="not the latest") as info:
        check_continuation(previous(), None, turns, answer, latest="resp_later")
    assert "its latest response is 'resp_later'" in info.value.message
    # With no response as the latest turn (a chat-completions turn), the conversation.
    with pytest.raises(ConversationConflict, match="latest turn is not a response") as info:
        check_continuation(previous(), None, turns, answer)
    assert f"'{SESSION.session_id}'" in info.value.message


def test_a_running_response_cannot_be_continued_yet() -> None:
    with pytest.raises(ConversationConflict, match="not finished"):
        check_continuation(previous(status="in_progress"), None, 2, "a")


def test_another_named_conversation_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_continuation(previous(), SessionKey("api", "t"), 2, "a")
    assert not isinstance(info.value, ConversationConflict)


@given(st.integers(0, 5), st.one_of(st.none(), st.text(max_size=3)), st.booleans())
def test_continuation_gives_the_session_or_a_domain_error(
    turns: int, answer: str | None, named: bool
) -> None:
    with contextlib.suppress(NanobotError):
        assert check_continuation(previous(), SESSION if named else None, turns, answer) == SESSION


@given(json_values)
def test_metadata_is_string_pairs_or_refused(value: object) -> None:
    try:
        pairs = check_metadata(value)
    except InvalidRequest:
        return
    assert len(pairs) <= 16
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)


@given(st.one_of(st.none(), st.text(max_size=4)), st.one_of(st.none(), st.text(max_size=5)))
def test_page_arguments_are_checked(limit: str | None, order: str | None) -> None:
    try:
        count, direction = check_page(limit, order)
    except InvalidRequest:
        return
    assert 1 <= count <= 100
    assert direction in ("asc", "desc")


@given(st.lists(st.integers(0, 30), max_size=30, unique=True), st.integers(1, 7))
def test_pages_walk_every_item_once_in_order(numbers: list[int], limit: int) -> None:
    items = [ConversationItem(f"i{n}", "message", "user", str(n)) for n in numbers]
    for order in ("asc", "desc"):
        seen: list[ConversationItem] = []
        after = None
        while True:
            page, more = page_after(items, after=after, limit=limit, order=order)  # type: ignore[arg-type]
            seen += page
            if not more:
                break
            after = page[-1].id
        assert seen == (items if order == "asc" else items[::-1])


def test_history_items_hide_server_tool_steps_but_show_open_client_calls() -> None:
    server = ToolCall("t1", "search", "{}")
    client = ToolCall("c1", "lookup", '{"q": 1}')
    history = (
        TurnRecord(
            (
                Message.user("hi"),
                Message.assistant(None, (server,)),
                Message.tool_result("t1", "found"),
                Message.assistant("answer"),
            )
        ),
        TurnRecord((Message.user("next"), Message.assistant(None, (client,)))),
    )
    items = history_items(history)
    assert [(i.kind, i.role, i.text) for i in items] == [
        ("message", "user", "hi"),
        ("message", "assistant", "answer"),
        ("message", "user", "next"),
        ("function_call", None, ""),
    ]
    assert items[-1].call_id == "c1"
    assert len({i.id for i in items}) == len(items)


def test_tool_steps_start_and_end_with_a_short_summary() -> None:
    names: dict[str, str] = {}
    calls = Message.assistant(None, (ToolCall("a", "search", "x" * 500), ToolCall("b", "f", "{}")))
    started = tool_progress(calls, names)
    assert [(s.call_id, s.name, s.status) for s in started] == [
        ("a", "search", "started"),
        ("b", "f", "started"),
    ]
    assert len(started[0].summary) <= 120
    (done,) = tool_progress(Message.tool_result("a", "ok\nfine"), names)
    assert (done.name, done.status, done.summary) == ("search", "done", "ok fine")
    (failed,) = tool_progress(Message.tool_result("b", "Error: no"), names)
    assert failed.status == "failed"
    assert tool_progress(Message.user("u"), names) == ()


@given(json_values)
def test_response_ids_are_checked_or_not_found(value: object) -> None:
    with contextlib.suppress(InvalidRequest):
        assert check_response_id(value).startswith("resp_")


times = st.floats(0, 1e10, allow_nan=False)


@given(st.sampled_from(RESPONSE_STATUSES), st.one_of(st.none(), times), times, times)
def test_a_run_once_lost_stays_lost_and_only_a_running_one_is(
    status: str, alive_until: float | None, now: float, later: float
) -> None:
    record = previous(status=status, alive_until=alive_until)
    if lost_its_run(record, now):
        assert record.running
        assert lost_its_run(record, now + later)  # time does not bring it back
    if alive_until is None:
        assert not lost_its_run(record, now)  # nobody vouches: nothing to lapse


@given(st.sampled_from(RESPONSE_STATUSES), times, st.one_of(st.none(), times), times, times)
def test_a_sweep_forgets_only_what_was_made_before_it_and_no_vouched_for_run(
    status: str, created_at: float, alive_until: float | None, cut_off: float, later: float
) -> None:
    record = previous(status=status, created_at=created_at, alive_until=alive_until)
    if forgettable(record, cut_off):
        assert created_at < cut_off
        assert forgettable(record, cut_off + later)  # a later sweep may forget it too
    if created_at < cut_off and (not record.running or lost_its_run(record, cut_off)):
        assert forgettable(record, cut_off)  # an ended or lost run always may go
    if record.running and alive_until is not None and alive_until >= cut_off:
        assert not forgettable(record, cut_off)  # vouched for since: it still runs
