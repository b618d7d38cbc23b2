"""``nanobot sessions list|show KEY [--all]|clear KEY``: look at and reset stored history.

Each command takes the session store and a text stream to write to, and returns the
process exit code: 0 done, 1 nothing to show. A key that is not ``<channel>:<id>`` is
refused before the store is opened (``SessionKey.parse``), as a usage error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from nanobot_api.domain.conversation import Message
from nanobot_api.domain.ports import SessionStore
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.text import printable

EXIT_OK = 0
EXIT_EMPTY = 1
_PREVIEW_CHARS = 2000


async def list_sessions(store: SessionStore, out: TextIO) -> int:
    """One line per session: its key and its number of turns, sorted by key."""
    sessions = await store.sessions()
    if not sessions:
        out.write("No sessions.\n")
        return EXIT_OK
    shown = {printable(str(key)): turns for key, turns in sessions.items()}
    width = max(len(key) for key in shown)
    for key, turns in sorted(shown.items()):
        out.write(f"{key:<{width}}  {turns} turn{'s' if turns != 1 else ''}\n")
    return EXIT_OK


async def show_session(
    store: SessionStore, key: SessionKey, out: TextIO, *, every: bool = False
) -> int:
    """Every turn of the session's conversation, message by message; exit 1 if it holds
    none. With ``every``, also the superseded turns (a regenerate, an edit or a branch
    switch left them), each marked with the turn it follows."""
    if every:
        stored = await store.turns(key)
        if not stored:
            out.write(f"Session {key} has no turns.\n")
            return EXIT_EMPTY
        for turn in stored:
            state = "superseded" if turn.superseded else "active"
            after = f", after #{turn.parent}" if turn.parent is not None else ", first"
            out.write(f"--- #{turn.no} ({state}{after}) ---\n")
            _write_messages(turn.record.messages, out)
        return EXIT_OK
    history = await store.history(key)
    if not history:
        out.write(f"Session {printable(str(key))} has no turns.\n")
        return EXIT_EMPTY
    for number, record in enumerate(history, start=1):
        out.write(f"--- turn {number} ---\n")
        _write_messages(record.messages, out)
    return EXIT_OK


def _write_messages(messages: Sequence[Message], out: TextIO) -> None:
    for message in messages:
        out.write(format_message(message) + "\n")


async def clear_session(store: SessionStore, key: SessionKey, out: TextIO) -> int:
    """Forgets the session's history; says how many turns went."""
    removed = await store.clear(key)
    out.write(f"Cleared {removed} turn{'s' if removed != 1 else ''} from {printable(str(key))}.\n")
    return EXIT_OK


def format_message(message: Message) -> str:
    """One message as a line or a few: who said it, then what (long texts cut)."""
    if message.role == "tool":
        return f"tool [{printable(message.tool_call_id or '')}]: {_preview(message.content)}"
    lines = []
    if message.content or not message.tool_calls:
        lines.append(f"{message.role}: {_preview(message.content)}")
    lines += [
        f"{message.role} -> {printable(call.name)}({_preview(call.arguments)}) "
        f"[{printable(call.id)}]"
        for call in message.tool_calls
    ]
    return "\n".join(lines)


def _preview(text: str | None) -> str:
    """A message's text on the terminal: cut when long, on one line, its control
    characters shown as escapes, never acted on by the terminal. Newlines too: kept,
    a message could print its own "--- turn N ---" or "assistant:" line."""
    if text is None:
        return ""
    if len(text) <= _PREVIEW_CHARS:
        return printable(text)
    cut = printable(text[:_PREVIEW_CHARS])
    return f"{cut}... [{len(text) - _PREVIEW_CHARS} more chars]"


def without_sessions(action: str, key: SessionKey | None, out: TextIO) -> int:
    """What ``action`` says when the workspace has never kept a session (no file to open)."""
    if key is None:
        out.write("No sessions.\n")
        return EXIT_OK
    if action == "show":
        out.write(f"Session {key} has no turns.\n")
        return EXIT_EMPTY
    out.write(f"Cleared 0 turns from {key}.\n")
    return EXIT_OK
