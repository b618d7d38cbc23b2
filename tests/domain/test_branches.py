"""History that follows the branch a front end shows (front-ends.md, "Rules")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.branches import (
    NO_IDS,
    MessageIds,
    Shown,
    ShownTurn,
    StoredTurn,
    active_branch,
    follow,
    message_id,
    same_turn,
    shown_conversation,
)
from nanobot_api.domain.conversation import Message, TurnRecord


def record(user: str, answer: str | None = None) -> TurnRecord:
    return TurnRecord((Message.user(user), Message.assistant(answer or f"echo {user}")))


def shown_turn(user: str, answer: str | None = None) -> ShownTurn:
    return ShownTurn(record(user, answer).messages)


class Session:
    """A tiny store: applies what ``follow`` decides, as a SessionStore must."""

    def __init__(self) -> None:
        self.turns: list[StoredTurn] = []

    def send(self, shown: Shown, user: str, answer: str | None = None) -> list[str]:
        """Runs a turn; returns the user texts the model saw before it."""
        followed = follow(shown, self.turns)
        keep = followed.kept_nos
        self.turns = [
            StoredTurn(t.no, t.parent, t.record, t.no not in keep, t.ids) for t in self.turns
        ]
        parent = followed.kept[-1].no if followed.kept else None
        records = [*followed.imported, record(user, answer)]
        for index, each in enumerate(records):
            no = len(self.turns) + 1
            ids = shown.ids if index == len(records) - 1 else NO_IDS
            self.turns.append(StoredTurn(no, parent, each, ids=ids))
            parent = no
        return [r.user_text for r in followed.history]

    @property
    def active(self) -> list[str]:
        return [t.record.user_text for t in active_branch(self.turns)]


def whole(*turns: str, ids: MessageIds = NO_IDS) -> Shown:
    return Shown(tuple(shown_turn(t) for t in turns), whole=True, ids=ids)


def test_open_webui_regenerate_edit_and_switch_back_as_recorded() -> None:
    s = Session()
    assert s.send(whole(), "first") == []
    assert s.send(whole("first"), "second") == ["first"]
    assert s.send(whole("first"), "second") == ["first"]  # regenerate
    assert s.active == ["first", "second"]
    assert s.send(whole(), "edited first") == []  # edit of the first message
    assert s.active == ["edited first"]
    # Back on the first branch: its turns are restored, the edit superseded.
    assert s.send(whole("first", "second"), "third") == ["first", "second"]
    assert s.active == ["first", "second", "third"]
    superseded = [(t.no, t.record.user_text) for t in s.turns if t.superseded]
    assert superseded == [(2, "second"), (4, "edited first")]


def test_ids_pick_the_answer_the_front_end_shows_among_equal_texts() -> None:
    s = Session()
    s.send(whole(ids=MessageIds("u1", "a1")), "q")
    s.send(whole("q", ids=MessageIds("u2", "a2", "a1")), "r")
    s.send(whole("q", ids=MessageIds("u2", "a3", "a1")), "r")  # regenerate: same texts
    # The user switches back to the first answer a2 and goes on from it.
    s.send(whole("q", "r", ids=MessageIds("u4", "a4", "a2")), "s")
    assert [t.no for t in active_branch(s.turns)] == [1, 2, 4]


def test_ids_alone_tell_a_regenerate_from_a_client_sending_only_new_messages() -> None:
    s = Session()
    s.send(Shown(ids=MessageIds("u1", "a1")), "q")
    s.send(Shown(ids=MessageIds("u2", "a2", "a1")), "r")
    assert s.send(Shown(ids=MessageIds("u2", "a3", "a1")), "r") == ["q"]
    assert s.send(Shown(ids=MessageIds("u9", "a9")), "new first") == []
    assert s.send(Shown(), "plain") == ["new first"]
    assert s.send(Shown(), "plain") == ["new first", "plain"]  # same text: a new turn


def test_a_parent_id_that_resolves_to_nothing_leaves_texts_to_decide() -> None:
    s = Session()
    s.send(whole(), "q")
    assert s.send(whole("q", ids=MessageIds("u2", "a2", "unknown")), "r") == ["q"]
    assert s.active == ["q", "r"]


def test_matching_texts_allow_for_a_file_note_and_a_wrapping_template() -> None:
    assert same_turn(record("look\n[document: a.pdf, 5 chars]", "x"), shown_turn("look", "x"))
    assert same_turn(
        record("<context>PAPAYA</context>\nwhat fruit?", "x"), shown_turn("what fruit?", "x")
    )
    assert same_turn(record("a", " x \n"), shown_turn("a", "x"))
    assert not same_turn(record("a", "x"), shown_turn("a", "y"))
    assert not same_turn(record("ab", "x"), shown_turn("b", "x"))


def test_a_file_chats_next_message_continues_the_stored_turn_as_open_webui_sends_it() -> None:
    """Seen in a real Open WebUI 0.12.4: the turn with a file is stored as the template
    holding the file's text; the next request shows that message without the context."""
    files = '<attached_files>\n<file name="notes.txt"/>\n</attached_files>\n\nwhat fruit?'
    stored = f"### Task:\nRespond...\n<context>PAPAYA</context>\n\n{files}"
    s = Session()
    s.send(whole(), stored, "ECHO[1]: x")
    shown = Shown((shown_turn(files, "ECHO[1]: x"),), whole=True)
    assert s.send(shown, "and its colour?") == [stored]
    assert not any(t.superseded for t in s.turns)


def test_a_conversation_is_read_turn_by_turn_from_its_messages() -> None:
    earlier = [
        ("system", "be brief"),
        ("assistant", "a greeting before any user message"),
        ("user", "q1"),
        ("assistant", "let me look"),
        ("tool", "result"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
    ]
    shown = shown_conversation(earlier, front_end=False)
    assert shown.whole
    assert [(t.user, t.answer) for t in shown.earlier] == [("q1", "a1"), ("q2", "a2")]
    assert not shown_conversation([], front_end=False).whole
    assert shown_conversation([], front_end=True).whole


def test_header_values_that_name_no_message_are_no_id() -> None:
    assert MessageIds.from_headers("", "None", " null ") == NO_IDS
    assert message_id(" abc ") == "abc"


texts = st.sampled_from(["a", "b", "c"])


@given(
    steps=st.lists(
        st.tuples(st.lists(texts, max_size=4), st.booleans(), texts), min_size=1, max_size=8
    )
)
def test_the_model_sees_exactly_the_turns_a_whole_conversation_holds(
    steps: list[tuple[list[str], bool, str]],
) -> None:
    """Whatever was stored before, a request showing turns t1..tn has the model see
    exactly those texts, the active branch becomes them plus the new turn, and every
    stored turn stays stored."""
    s = Session()
    for earlier, is_whole, new in steps:
        before = len(s.turns)
        shown = whole(*earlier) if is_whole or earlier else Shown()
        active_before = s.active
        seen = s.send(shown, new)
        if shown.whole:
            assert seen == earlier
        else:
            assert seen == active_before
        assert s.active == [*seen, new]
        assert len(s.turns) >= before + 1
        # Branches only ever point back to older turns.
        assert all(t.parent is None or t.parent < t.no for t in s.turns)


@given(
    stored=st.lists(
        st.tuples(st.integers(0, 6), st.booleans(), texts, st.sampled_from([None, "x", "y"])),
        max_size=6,
    ),
    earlier=st.lists(texts, max_size=4),
    ids=st.builds(
        MessageIds,
        st.none() | st.sampled_from(["x", "y"]),
        st.none(),
        st.none() | st.sampled_from(["x", "y"]),
    ),
    is_whole=st.booleans(),
)
def test_follow_gives_a_branch_of_stored_turns_for_any_store(
    stored: list[tuple[int, bool, str, str | None]],
    earlier: list[str],
    ids: MessageIds,
    is_whole: bool,
) -> None:
    turns = [
        StoredTurn(no, parent if 0 < parent < no else None, record(text), sup, MessageIds(mid, mid))
        for no, (parent, sup, text, mid) in enumerate(stored, start=1)
    ]
    followed = follow(Shown(tuple(shown_turn(t) for t in earlier), is_whole, ids), turns)
    nos = [t.no for t in followed.kept]
    assert nos == sorted(set(nos))
    assert all(t in turns for t in followed.kept)
    if is_whole:
        assert [r.user_text for r in followed.history] == earlier
