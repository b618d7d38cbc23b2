"""A chat turn from the request that asks for it to the result it produced."""

from __future__ import annotations

import attrs

from nanobot_api.domain.attachments import Document, Image, Upload
from nanobot_api.domain.branches import NOTHING_SHOWN, Shown
from nanobot_api.domain.client import NO_OPTIONS, TurnOptions
from nanobot_api.domain.conversation import History, Message, ToolCall, Usage
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.sessions import SessionKey

EMPTY_REPLY_FALLBACK = (
    "I completed the tool steps but couldn't produce a final answer. "
    "Please try again or narrow the task."
)
DEFAULT_UPLOAD_PROMPT = "Please analyze the uploaded file(s)."
DEFAULT_MAX_REPLY_CHARS = 100_000
DEFAULT_TOOL_RESULT_TIMEOUT_S = 600.0


@attrs.frozen
class ReplyBound:
    """The most characters one turn's reply may hold; past it the reply is cut and ends
    with ``marker``, so a runaway model neither fills the server's memory nor makes its
    session too large to send upstream again."""

    max_chars: int = DEFAULT_MAX_REPLY_CHARS

    @property
    def marker(self) -> str:
        return f"\n\n[reply cut: it reached the limit of {self.max_chars:,} characters]"

    def cut(self, text: str) -> str:
        """``text`` itself if within the bound, else its start and the marker."""
        return text if len(text) <= self.max_chars else text[: self.max_chars] + self.marker


@attrs.frozen
class ChatRequest:
    """What a client asked for, already checked for shape.

    ``shown`` is what the request says of the conversation before its new message
    (``domain.branches``): a regenerate, an edit or a branch switch shows another
    branch than the session's active one. ``task`` marks an auxiliary request (a
    front end's title or tag generation) answered from ``conversation`` alone, outside
    any session. ``options`` is what the client asked of the turn besides its message.
    ``tool_results`` answer the client-tool calls of the session's paused turn;
    ``continues`` says the request holds no new user message, only those results, so
    the paused turn goes on; ``resent_calls`` are the call ids of the paused turn's
    assistant message when the request resends it (at ``messages[resent_at]``).
    """

    session: SessionKey
    text: str
    uploads: tuple[Upload, ...] = ()
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    tool_events: bool = False
    shown: Shown = NOTHING_SHOWN
    task: str | None = None
    conversation: tuple[Message, ...] = ()
    options: TurnOptions = NO_OPTIONS
    tool_results: tuple[Message, ...] = ()
    continues: bool = False
    resent_calls: tuple[str, ...] = ()
    resent_at: int = -1


@attrs.frozen
class PreparedTurn:
    """A request accepted for running: model checked, files turned into images and text."""

    session: SessionKey
    text: str
    images: tuple[Image, ...] = ()
    documents: tuple[Document, ...] = ()
    shown: Shown = NOTHING_SHOWN
    task: str | None = None
    conversation: tuple[Message, ...] = ()
    stream: bool = True
    options: TurnOptions = NO_OPTIONS
    tool_results: tuple[Message, ...] = ()
    continues: bool = False


@attrs.frozen
class Turn:
    """What an agent sees: the new user message, its attachments, and the session's past.

    ``stream`` is True when the caller reads the reply as it is written; when False, an
    agent may produce it in one piece (nothing is shown before the turn ends).
    ``options`` is what the client asked of this turn besides its message (its own
    instructions, the answer's shape, its own tools). ``resumed`` holds a paused turn
    that goes on: its messages so far, the user's first and the results of the
    client's tool calls last; an agent continues from them instead of from ``text``.
    """

    session: SessionKey
    text: str
    images: tuple[Image, ...] = ()
    documents: tuple[Document, ...] = ()
    history: History = ()
    stream: bool = True
    options: TurnOptions = NO_OPTIONS
    resumed: tuple[Message, ...] = ()

    @classmethod
    def from_prepared(cls, prepared: PreparedTurn, history: History) -> Turn:
        return cls(
            prepared.session,
            prepared.text,
            prepared.images,
            prepared.documents,
            history,
            stream=prepared.stream,
            options=prepared.options,
        )


@attrs.frozen
class TurnResult:
    """The whole reply of a finished turn and the tokens it used; ``tool_calls`` are
    the client's own tools the model called, for which the turn now waits."""

    text: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


def check_model(requested: str | None, served: str) -> None:
    """Accepts no model or the served one; any other model is an InvalidRequest."""
    if requested is not None and requested != served:
        raise InvalidRequest(f"Only configured model '{served}' is available", "model")
