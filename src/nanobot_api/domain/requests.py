"""What a conversation request may contain, decided over values already parsed.

``adapters/http/wire.py`` turns bytes into roles, texts and uploads; the rules here
say which message is the turn, whether a whole conversation is accepted, what a
front end's auxiliary request reads, and what a turn with files but no words says
(which stored turns a whole conversation continues is ``domain/branches.py``'s).
JSON and multipart bodies meet the same rules because both call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import attrs

from nanobot_api.domain.conversation import Message
from nanobot_api.domain.errors import InvalidRequest

HistoryMode = Literal["reject", "latest"]
"""``reject``: a request holds exactly one user message (the server keeps the past).
``latest``: a whole conversation is accepted and its last message is the turn."""

DEFAULT_UPLOAD_PROMPT: Final = "Please analyze the uploaded file(s)."
SINGLE_USER_MESSAGE: Final = "Only a single user message is supported"
LAST_MESSAGE_USER: Final = (
    "The last message must be a user message (or the tool messages that answer the "
    "session's paused tool calls)"
)
SEND_ONE_MESSAGE: Final = (
    f"{SINGLE_USER_MESSAGE}: this server keeps the conversation itself, so send only "
    "the new user message (after any system or developer messages), or the results of "
    "the paused turn's tool calls as tool messages. To send whole conversations (chat "
    'front ends), run it with api.history = "latest" and name the session with an '
    "X-Session-Id header (Open WebUI: set ENABLE_FORWARD_USER_INFO_HEADERS=true, or add "
    "the connection header X-Session-Id: {{CHAT_ID}})"
)
NAME_A_SESSION: Final = (
    "A conversation of several messages needs a session: send session_id in the body "
    "or an X-Session-Id header (Open WebUI: set ENABLE_FORWARD_USER_INFO_HEADERS=true, "
    "or add the connection header X-Session-Id: {{CHAT_ID}})"
)
AUXILIARY_ROLES: Final = ("system", "user", "assistant")
INSTRUCTION_ROLES: Final = ("system", "developer")
"""Roles whose text is the client's instructions for the turn, never stored."""


@attrs.frozen
class TurnPosition:
    """Where a request's turn is among its messages.

    ``instructions`` are the positions of the client's system/developer messages.
    ``results`` are the positions of tool messages that answer the session's paused
    tool calls; with ``continues`` the request holds no new user message (``index`` is
    then -1): the paused turn goes on.
    """

    index: int
    instructions: tuple[int, ...] = ()
    results: tuple[int, ...] = ()
    continues: bool = False


def turn_position(roles: Sequence[str | None], mode: HistoryMode, named: bool) -> TurnPosition:
    """The turn's message among ``roles`` (None: a message that is not an object).

    In both modes, system/developer messages are the client's instructions. In
    ``reject`` mode the rest is exactly one user message; or tool messages alone, or
    a resend of the paused turn (its user message, the assistant message with the tool
    calls) followed by tool messages: both answer the paused turn. In ``latest`` mode
    the last message is the turn's user message, or trailing tool messages after the
    last assistant message answer the paused turn. Raises InvalidRequest (saying what
    to send instead) for anything else, or for a conversation of several messages
    without a session to keep them apart (``named`` is False).
    """
    if mode == "reject":
        lead = 0
        while lead < len(roles) and roles[lead] in INSTRUCTION_ROLES:
            lead += 1
        instructions = tuple(range(lead))
        rest = list(roles[lead:])
        if rest == ["user"]:
            return TurnPosition(lead, instructions)
        tools_from = _tool_results_start(rest)
        if tools_from is not None:
            results = tuple(range(lead + tools_from, len(roles)))
            return TurnPosition(-1, instructions, results, continues=True)
        raise InvalidRequest(SEND_ONE_MESSAGE, "messages")
    instructions = tuple(i for i, role in enumerate(roles) if role in INSTRUCTION_ROLES)
    if roles and roles[-1] == "tool":
        start = len(roles)
        while start > 0 and roles[start - 1] == "tool":
            start -= 1
        if start > 0 and roles[start - 1] == "assistant":
            results = tuple(range(start, len(roles)))
            return TurnPosition(-1, instructions, results, continues=True)
    if not roles or roles[-1] != "user":
        raise InvalidRequest(LAST_MESSAGE_USER, "messages")
    if len(roles) - len(instructions) > 1 and not named:
        raise InvalidRequest(NAME_A_SESSION, "session_id")
    return TurnPosition(len(roles) - 1, instructions)


def _tool_results_start(rest: Sequence[str | None]) -> int | None:
    """Where the tool messages start in a request that only answers a paused turn:
    ``tool...`` or ``user, assistant, tool...``; None for any other shape."""
    if rest and all(role == "tool" for role in rest):
        return 0
    resent = len(rest) >= 3 and rest[:2] == ["user", "assistant"]
    if resent and all(role == "tool" for role in rest[2:]):
        return 2
    return None


def turn_text(texts: Sequence[str], uploads: int) -> str:
    """A turn's words: its text parts one per line; with files but no words (nothing,
    or only whitespace), the default prompt that asks to look at them."""
    text = "\n".join(texts)
    if uploads and not text.strip():
        return DEFAULT_UPLOAD_PROMPT
    return text


def auxiliary_conversation(messages: Sequence[tuple[object, str]]) -> tuple[Message, ...]:
    """An auxiliary request's messages (a front end's title or tag request) as plain
    text: ``(role, text)`` pairs, each role one of system, user and assistant."""
    if not messages:
        raise InvalidRequest("messages must be a non-empty list", "messages")
    conversation = []
    for index, (role, text) in enumerate(messages):
        if role not in AUXILIARY_ROLES:
            param = f"messages[{index}].role"
            raise InvalidRequest(f"{param} must be system, user or assistant", param)
        conversation.append(Message(role, check_text(text, f"messages[{index}].content")))
    return tuple(conversation)


def auxiliary_text(conversation: Sequence[Message]) -> str:
    """What an agent without plain completion answers: the last user message's text."""
    return next((m.content or "" for m in reversed(conversation) if m.role == "user"), "")


def check_text(text: str, param: str) -> str:
    """``text`` if it is valid Unicode; InvalidRequest for a lone surrogate
    (``"\\ud800"`` in JSON), which no store, model or answer could encode."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{param} is not valid Unicode (a lone surrogate)", param) from exc
    return text
