"""Text from clients or the model, made safe for a log line or a terminal."""

from __future__ import annotations

from typing import Final

# The escapes people read at a glance; every other unprintable character gets \xNN/\uNNNN.
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character that a terminal or a log reader would act on shown
    as an escape instead: control characters (a newline that could forge a log line, an
    ESC that starts a terminal sequence), line and paragraph separators, and format
    characters such as bidirectional overrides. Printable text, spaces and non-ASCII
    letters included, comes back unchanged (and is the same object). Characters in
    ``keep`` (say ``"\n\t"`` for a message shown on lines of its own) are kept as well.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else _escape(char) for char in text)


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
