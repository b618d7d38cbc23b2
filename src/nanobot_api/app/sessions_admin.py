"""``nanobot sessions list|show KEY|clear KEY``: look at and reset stored history.

Each command takes the session store and a text stream to write to, and returns the
process exit code: 0 done, 1 nothing to show. A key that is not ``<channel>:<id>`` is
refused before the store is opened (``SessionKey.parse``), as a usage error.
"""

from __future__ import annotations

from typing import TextIO

from nanobot_api.domain.conversation import Message
from nanobot_api.domain.ports import SessionStore
from nanobot_api.domain.sessions import SessionKey

EXIT_OK = 0
EXIT_EMPTY = 1
_PREVIEW_CHARS = 2000


async def list_sessions(store: SessionStore, out: TextIO) -> int:
    """One line per session: its key and its number of turns, sorted by key."""
    sessions = await store.sessions()
    if not sessions:
        out.write("No sessions.\n")
        return EXIT_OK
    width = max(len(str(key)) for key in sessions)
    for key, turns in sorted(sessions.items(), key=lambda item: str(item[0])):
        out.write(f"{key!s:<{width}}  {turns} turn{'s' if turns != 1 else ''}\n")
    return EXIT_OK


async def show_session(store: SessionStore, key: SessionKey, out: TextIO) -> int:
    """Every turn of the session, message by message; exit 1 if it holds none."""
    history = await store.history(key)
    if not history:
        out.write(f"Session {key} has no turns.\n")
        return EXIT_EMPTY
    for number, record in enumerate(history, start=1):
        out.write(f"--- turn {number} ---\n")
        for message in record.messages:
            out.write(format_message(message) + "\n")
    return EXIT_OK


async def clear_session(store: SessionStore, key: SessionKey, out: TextIO) -> int:
    """Forgets the session's history; says how many turns went."""
    removed = await store.clear(key)
    out.write(f"Cleared {removed} turn{'s' if removed != 1 else ''} from {key}.\n")
    return EXIT_OK


def format_message(message: Message) -> str:
    """One message as a line or a few: who said it, then what (long texts cut)."""
    if message.role == "tool":
        return f"tool [{message.tool_call_id}]: {_preview(message.content)}"
    lines = []
    if message.content or not message.tool_calls:
        lines.append(f"{message.role}: {_preview(message.content)}")
    lines += [
        f"{message.role} -> {call.name}({_preview(call.arguments)}) [{call.id}]"
        for call in message.tool_calls
    ]
    return "\n".join(lines)


def _preview(text: str | None) -> str:
    if text is None:
        return ""
    if len(text) <= _PREVIEW_CHARS:
        return text
    return f"{text[:_PREVIEW_CHARS]}... [{len(text) - _PREVIEW_CHARS} more chars]"


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
