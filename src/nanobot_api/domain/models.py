"""What the agent sends a chat model and what it gets back, and the tools it offers.

These values are the ``ChatModel`` and ``Tool`` ports' vocabulary. They know nothing of
any provider's wire format: the LLM adapter translates them at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

import attrs

from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import History, Message, Usage
from nanobot_api.domain.sessions import SessionKey

if TYPE_CHECKING:
    from nanobot_api.domain.ports import Reply

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, JsonValue]


@attrs.frozen
class TextPart:
    """Plain text inside a user message."""

    text: str


@attrs.frozen
class ImagePart:
    """An image inside a user message, as its bytes and their MIME type."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    mime: str


ContentPart: TypeAlias = TextPart | ImagePart


@attrs.frozen
class UserContent:
    """A user message with attachments: text and image parts, in order."""

    parts: tuple[ContentPart, ...]

    @property
    def role(self) -> str:
        return "user"

    @classmethod
    def of_turn(
        cls, text: str, images: Sequence[Image] = (), documents: Sequence[Document] = ()
    ) -> UserContent:
        """The user's text, then each document as a text part headed by its name, then images.

        The heading lets the model tell files apart and cite them by name.
        """
        parts: list[ContentPart] = [TextPart(text)]
        parts += [TextPart(document_text(doc)) for doc in documents]
        parts += [ImagePart(image.data, image.mime) for image in images]
        return cls(tuple(parts))

    @property
    def text(self) -> str:
        """The text parts joined, for providers or logs that take only text."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart))


def document_text(doc: Document) -> str:
    """How a document reaches the model: its name as a heading, then its text (which,
    cut short, already ends with its own ``[... truncated: <why>]`` marker)."""
    return f"[File: {doc.name}]\n{doc.text}"


ModelMessage: TypeAlias = Message | UserContent


@attrs.frozen
class ToolSpec:
    """A tool as the model is told about it: name, what it is for, a JSON schema of its
    arguments (an object schema: ``properties``, ``required``, ``type``, ``enum``)."""

    name: str
    description: str
    parameters: Mapping[str, JsonValue] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, hash=False
    )


@attrs.frozen
class ModelRequest:
    """One call to a chat model: the conversation so far and the tools it may call.

    The conversation is ``system`` (if any), then ``history``, the session's earlier
    turns as the store keeps them, then ``messages``, this turn's own: the user's, then
    any tool calls and results. History is kept whole rather than flattened into
    ``messages`` because it is the same from one call to the next but for a turn at
    either end, and a model adapter may reuse its work on it (see ``conversation``
    for all of it as one sequence).

    ``stream`` says whether the caller reads the answer's text as it arrives; when it
    does not, the model may deliver the text in one piece. ``max_reply_chars`` bounds
    the answer: a model adapter stops reading past it and returns what it has (with
    ``finish_reason`` "length"), so a runaway reply never fills the server's memory.
    ``response_format``, ``tool_choice`` and ``parallel_tool_calls`` are passed on as
    the client sent them (OpenAI's shapes).
    """

    messages: tuple[ModelMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    stream: bool = True
    history: History = ()
    system: Message | None = None
    max_reply_chars: int | None = None
    response_format: Mapping[str, JsonValue] | None = attrs.field(default=None, hash=False)
    tool_choice: JsonValue = attrs.field(default=None, hash=False)
    parallel_tool_calls: bool | None = None

    @property
    def conversation(self) -> tuple[ModelMessage, ...]:
        """Every message the model is sent, in order."""
        head: tuple[ModelMessage, ...] = () if self.system is None else (self.system,)
        past = tuple(message for turn in self.history for message in turn.messages)
        return head + past + self.messages


@attrs.frozen
class ToolCallPiece:
    """A piece of a tool call as a streaming model produces it, OpenAI's way: a call's
    first piece names it (``id`` and ``name`` set, ``arguments`` maybe ""), each later
    piece of the same ``index`` adds a fragment of its ``arguments`` (``id`` and
    ``name`` empty). Joined in order, the fragments are the call's whole arguments."""

    index: int
    id: str
    name: str
    arguments: str

    @property
    def starts_call(self) -> bool:
        return bool(self.name)


@attrs.frozen
class ModelResponse:
    """The model's answer to one call: an assistant message (text and/or tool calls)."""

    message: Message
    usage: Usage = attrs.field(factory=Usage)
    finish_reason: str | None = None


@attrs.frozen
class ToolContext:
    """What a tool may know about the turn that calls it.

    ``reply`` is the turn's reply: a tool that answers the current caller (the
    ``message`` tool without a channel) sends its text there. ``tally`` is the turn's
    own scratch counts, fresh each turn, for tools that bound what one turn may do (the
    ``message`` tool counts its sends there).
    """

    session: SessionKey
    reply: Reply = attrs.field(eq=False)
    tally: dict[str, int] = attrs.field(factory=dict, eq=False, repr=False)
