"""What a session remembers: messages grouped into turns, and token usage."""

from __future__ import annotations

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
    """A completed turn: its user message first, then everything the agent added."""

    messages: tuple[Message, ...]

    @property
    def user_text(self) -> str:
        return self.messages[0].content or "" if self.messages else ""


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


def bounded_history(history: History, max_messages: int) -> History:
    """The most recent whole turns that together hold at most ``max_messages`` messages.

    Cutting only between turns keeps every tool call beside its result.
    """
    kept: list[TurnRecord] = []
    count = 0
    for record in reversed(history):
        count += len(record.messages)
        if count > max_messages:
            break
        kept.append(record)
    return tuple(reversed(kept))
