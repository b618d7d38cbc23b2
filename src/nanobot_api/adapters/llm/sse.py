"""Server-sent events read incrementally from arbitrary byte chunks.

Only the ``data`` field matters to chat-completion streams; comments (``: keep-alive``)
and other fields are skipped. Lines may end in LF, CRLF or CR, and a chunk may end in
the middle of a line, a UTF-8 character or a CRLF pair.
"""

from __future__ import annotations

import codecs
import re

# Only these end a line in SSE; str.splitlines would also split on U+2028 inside JSON.
_BREAK = re.compile(r"\r\n|\r|\n")


class SseDecoder:
    """Feeds bytes in, gets each complete event's data out (its lines joined by LF)."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._data: list[str] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event that ``chunk`` completes, in order."""
        text = self._text.decode(chunk)
        if not text:
            return []
        if self._skip_lf:
            # The CR that ended the previous chunk and this LF are one line break.
            self._skip_lf = False
            text = text.removeprefix("\n")
        buffer = self._pending + text
        events: list[str] = []
        if "\r" not in buffer:
            # Every line ends in LF (what providers send): split once, and take the
            # usual lines (data, the blank line ending an event) here. This runs for
            # every read of every stream in flight.
            lines = buffer.split("\n")
            self._pending = lines.pop()
            data = self._data
            for line in lines:
                if not line:
                    if data:
                        events.append("\n".join(data))
                        data.clear()
                elif line.startswith("data:"):
                    data.append(line[6:] if line.startswith(" ", 5) else line[5:])
                else:
                    self._line(line, events)
            return events
        start = 0
        for match in _BREAK.finditer(buffer):
            self._line(buffer[start : match.start()], events)
            start = match.end()
        self._pending = buffer[start:]
        self._skip_lf = buffer.endswith("\r")
        return events

    def close(self) -> list[str]:
        """Events still held when the stream ends (a last event without a blank line)."""
        events: list[str] = []
        tail = self._pending + self._text.decode(b"", final=True)
        self._pending = ""
        if tail:
            self._line(tail, events)
        if self._data:
            events.append("\n".join(self._data))
            self._data.clear()
        return events

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data.clear()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
