"""What a session remembers: messages grouped into turns, and token usage."""

from __future__ import annotations

import functools
from typing import Literal

import attrs

Role = Literal["system", "user", "assistant", "tool"]


@attrs.frozen
class ToolCall:
    """One call the model asked for; ``arguments`` is the model's JSON text, unparsed."""

    id: str
    name: str
    arguments: str


@attrs.frozen
class Message:
    """One message of a conversation as the model sees it (attachments only as a note)."""

    role: Role
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str | None, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls("assistant", text, tool_calls)

    @classmethod
    def tool_result(cls, call_id: str, text: str) -> Message:
        return cls("tool", text, tool_call_id=call_id)


@attrs.frozen
class TurnRecord:
    """A completed turn: its user message first, then everything the agent added.

    ``paused_at`` (a Unix time) marks a turn that waits for the results of the client's
    own tool calls (see ``domain.pauses``); None for every other turn.
    """

    messages: tuple[Message, ...]
    paused_at: float | None = None

    @property
    def user_text(self) -> str:
        return self.messages[0].content or "" if self.messages else ""

    @functools.cached_property
    def byte_size(self) -> int:
        """See :func:`turn_size`; counted once per turn object, since every turn of a
        session bounds its history by it again (the stores hand out the same objects)."""
        size = 0
        for message in self.messages:
            if message.content:
                size += _utf8_size(message.content)
            for call in message.tool_calls:
                size += _utf8_size(call.arguments) + len(call.name)
        return size


History = tuple[TurnRecord, ...]


@attrs.frozen
class Usage:
    """Token counts as the model reported them; turns add the usage of all their calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


# What history may send upstream, whatever its count of messages: one huge turn must
# not make every later request of its session too large for the provider.
MAX_HISTORY_BYTES = 2 * 1024 * 1024


def turn_size(record: TurnRecord) -> int:
    """About how many bytes a turn adds to a model request: its texts and tool
    arguments in UTF-8 (the JSON around them is left out)."""
    return record.byte_size


def _utf8_size(text: str) -> int:
    # isascii() is a flag CPython keeps on every str: most texts are never encoded here.
    return len(text) if text.isascii() else len(text.encode())


def bounded_history(
    history: History, max_messages: int | None = None, max_bytes: int | None = None
) -> History:
    """The most recent whole turns that together hold at most ``max_messages`` messages
    and about ``max_bytes`` bytes (see :func:`turn_size`); the oldest go first.

    Cutting only between turns keeps every tool call beside its result. The turns kept
    are the same objects, a slice of ``history``.
    """
    count = 0
    size = 0
    start = len(history)
    if max_messages is None and max_bytes is not None:
        # The turn path's case (every turn, over up to a window of turns): sizes only.
        while start > 0:
            size += history[start - 1].byte_size
            if size > max_bytes:
                break
            start -= 1
        return history[start:]
    while start > 0:
        record = history[start - 1]
        count += len(record.messages)
        if max_messages is not None and count > max_messages:
            break
        if max_bytes is not None:
            size += turn_size(record)
            if size > max_bytes:
                break
        start -= 1
    return history[start:]
