"""History that follows the conversation a front end shows.

A chat front end keeps a tree of messages: a regenerate adds a second answer under
the same user message, an edit adds a second user message under the same parent, and
the user may switch between branches at any time. The front end then sends the
branch it shows. The server keeps every turn it ever stored, each pointing at the turn
before it on its branch, and marks the turns of the branch last sent as active; the
others are *superseded*: never sent to the model again, kept so that switching back
restores them.

``follow`` decides, from the turns a request holds before its new message, which
stored turns it shows (matched by message ids where the recipe sends them, else by
texts), which come from the request alone, and so which stored turns are superseded.
It is pure: the store applies its answer in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from nanobot_api.domain.conversation import Message, TurnRecord

# Values a header template may be filled with when the id it names does not exist.
_NO_ID: Final = frozenset({"", "none", "null", "undefined"})


def message_id(value: str | None) -> str | None:
    """A message id from a header, or None for an absent or empty one."""
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in _NO_ID else value


@attrs.frozen
class MessageIds:
    """A front end's ids of one turn's messages (the recipe's headers).

    ``user`` is the user message's id, ``answer`` the answer's, and ``parent`` the id of
    the answer before the user message (None for a conversation's first message).
    """

    user: str | None = None
    answer: str | None = None
    parent: str | None = None

    @classmethod
    def from_headers(cls, user: str | None, answer: str | None, parent: str | None) -> MessageIds:
        return cls(message_id(user), message_id(answer), message_id(parent))

    @property
    def any(self) -> bool:
        return self.user is not None or self.answer is not None or self.parent is not None


NO_IDS: Final = MessageIds()


@attrs.frozen
class StoredTurn:
    """A turn as a session store keeps it.

    ``no`` grows with every turn stored in the session; ``parent`` is the ``no`` of the
    turn before it on its branch (None for a first turn), always a smaller number.
    """

    no: int
    parent: int | None
    record: TurnRecord
    superseded: bool = False
    ids: MessageIds = NO_IDS


@attrs.frozen
class ShownTurn:
    """An earlier turn as a request holds it: its messages, user message first."""

    messages: tuple[Message, ...]

    @property
    def user(self) -> str:
        return self.messages[0].content or ""

    @property
    def answer(self) -> str:
        return _answer(self.messages)

    def record(self) -> TurnRecord:
        return TurnRecord(self.messages)


@attrs.frozen
class Shown:
    """What a request says about the conversation before its new message.

    ``whole`` is True when the request is the whole conversation (a front end that
    always sends it, or any request holding earlier turns): then ``earlier`` is exactly
    what precedes the new message, and an empty ``earlier`` means a conversation of one
    turn. When False (a client that sends only its new message), the new turn follows
    the session's active branch unless ``ids`` say otherwise.
    """

    earlier: tuple[ShownTurn, ...] = ()
    whole: bool = False
    ids: MessageIds = NO_IDS


NOTHING_SHOWN: Final = Shown()


@attrs.frozen
class Followed:
    """Where a new turn goes: after ``kept`` (stored turns, oldest first) and
    ``imported`` (turns only the request holds, stored after them). Every stored turn
    not in ``kept`` is superseded."""

    kept: tuple[StoredTurn, ...]
    imported: tuple[TurnRecord, ...] = ()

    @property
    def history(self) -> tuple[TurnRecord, ...]:
        """The turns the model sees before the new one."""
        return (*(turn.record for turn in self.kept), *self.imported)

    @property
    def kept_nos(self) -> frozenset[int]:
        return frozenset(turn.no for turn in self.kept)


def active_branch(stored: Iterable[StoredTurn]) -> tuple[StoredTurn, ...]:
    """The stored turns not superseded, oldest first."""
    return tuple(sorted((t for t in stored if not t.superseded), key=lambda t: t.no))


def follow(shown: Shown, stored: Sequence[StoredTurn]) -> Followed:
    """The branch a request continues, given every turn the session has stored.

    With a whole conversation, its earlier turns are walked from the first: each is
    the stored turn after the previous one (or a first turn) that matches it, by the
    recipe's message ids when they point at one, else by its user text and answer
    (preferring the active turn, then the latest); from the first that matches none,
    the rest come from the request. A request that sends only its new message
    continues the active branch, unless its ids name a stored turn: the turn its parent
    id names is the one before it (a regenerate or an edit, told by ids).
    """
    by_no = {turn.no: turn for turn in stored}
    pointed = _pointed_branch(shown.ids, stored, by_no)
    if not shown.whole:
        if pointed is not None:
            return Followed(pointed)
        return Followed(active_branch(stored))
    preferred = frozenset(turn.no for turn in pointed or ())
    children: dict[int | None, list[StoredTurn]] = {}
    for turn in sorted(stored, key=lambda t: t.no):
        children.setdefault(turn.parent, []).append(turn)
    kept: list[StoredTurn] = []
    parent: int | None = None
    for shown_turn in shown.earlier:
        candidates = [t for t in children.get(parent, ()) if same_turn(t.record, shown_turn)]
        if not candidates:
            break
        pick = max(candidates, key=lambda t: (t.no in preferred, not t.superseded, t.no))
        kept.append(pick)
        parent = pick.no
    rest = shown.earlier[len(kept) :]
    return Followed(tuple(kept), tuple(turn.record() for turn in rest))


def _pointed_branch(
    ids: MessageIds, stored: Sequence[StoredTurn], by_no: dict[int, StoredTurn]
) -> tuple[StoredTurn, ...] | None:
    """The branch ending at the turn the ids say comes before the new one, if stored.

    The parent id names the answer before the new user message. Failing that, a user
    id already stored (a regenerate) says the new turn replaces that one; a new user
    id with no parent id starts the conversation (the first message, or its edit).
    """
    if ids.parent is not None:
        for turn in stored:
            if turn.ids.answer == ids.parent:
                return _branch_to(turn, by_no)
    if ids.user is not None:
        for turn in stored:
            if turn.ids.user == ids.user:
                before = by_no.get(turn.parent) if turn.parent is not None else None
                return () if before is None else _branch_to(before, by_no)
        if ids.parent is None:
            return ()
    return None


def _branch_to(turn: StoredTurn, by_no: dict[int, StoredTurn]) -> tuple[StoredTurn, ...]:
    branch = [turn]
    seen = {turn.no}
    while branch[-1].parent is not None:
        before = by_no.get(branch[-1].parent)
        if before is None or before.no in seen:
            break  # a parent no longer stored: the branch starts here
        seen.add(before.no)
        branch.append(before)
    return tuple(reversed(branch))


def same_turn(stored: TurnRecord, shown: ShownTurn) -> bool:
    """Whether a stored turn is the one a request shows, by its texts.

    The answers must be equal (surrounding white space aside). The user texts must be
    equal too, but a stored user message may carry more than the front end shows: a
    note of its files after the text, or a template the front end wrapped it in (Open
    WebUI puts an uploaded file's text before the question), so a stored text that
    starts or ends with the shown one on a line of its own also matches.
    """
    if _answer(stored.messages).strip() != shown.answer.strip():
        return False
    mine = (stored.messages[0].content or "").strip() if stored.messages else ""
    theirs = shown.user.strip()
    if mine == theirs:
        return True
    return bool(theirs) and (mine.startswith(theirs + "\n") or mine.endswith("\n" + theirs))


def _answer(messages: Sequence[Message]) -> str:
    """A turn's answer: its last assistant message that has text."""
    for message in reversed(messages):
        if message.role == "assistant" and message.content:
            return message.content
    return ""


def shown_conversation(
    earlier: Sequence[tuple[str, str]], *, front_end: bool, ids: MessageIds = NO_IDS
) -> Shown:
    """What a request in ``"latest"`` mode shows before its new message.

    ``earlier`` holds the (role, text) of each message before the new user message.
    Each user message starts a turn and the assistant texts after it are its answer;
    system, developer and tool messages are no part of a turn's texts. A front end
    that always sends the whole conversation (``front_end``) means exactly what it
    sends, even a single message; from any other client, a request with nothing
    before its message is only a new message.
    """
    turns: list[ShownTurn] = []
    user: str | None = None
    answers: list[str] = []
    for role, text in (*earlier, ("user", "")):
        if role == "user":
            if user is not None:
                # As for a stored turn, the answer is the last assistant text (earlier
                # ones came with tool calls).
                answer = next((a for a in reversed(answers) if a), "")
                turns.append(ShownTurn((Message.user(user), Message.assistant(answer))))
            user, answers = text, []
        elif role == "assistant" and user is not None:
            answers.append(text)
    return Shown(tuple(turns), whole=front_end or bool(earlier), ids=ids)
