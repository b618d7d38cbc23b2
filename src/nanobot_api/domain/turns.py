"""A chat turn from the request that asks for it to the result it produced."""

from __future__ import annotations

import attrs

from nanobot_api.domain.attachments import Document, Image, Upload
from nanobot_api.domain.branches import NOTHING_SHOWN, Shown
from nanobot_api.domain.conversation import History, Message, Usage
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.sessions import SessionKey

EMPTY_REPLY_FALLBACK = (
    "I completed the tool steps but couldn't produce a final answer. "
    "Please try again or narrow the task."
)
DEFAULT_UPLOAD_PROMPT = "Please analyze the uploaded file(s)."
DEFAULT_MAX_REPLY_CHARS = 100_000


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
    any session.
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


@attrs.frozen
class Turn:
    """What an agent sees: the new user message, its attachments, and the session's past.

    ``stream`` is True when the caller reads the reply as it is written; when False, an
    agent may produce it in one piece (nothing is shown before the turn ends).
    """

    session: SessionKey
    text: str
    images: tuple[Image, ...] = ()
    documents: tuple[Document, ...] = ()
    history: History = ()
    stream: bool = True

    @classmethod
    def from_prepared(cls, prepared: PreparedTurn, history: History) -> Turn:
        return cls(
            prepared.session,
            prepared.text,
            prepared.images,
            prepared.documents,
            history,
            stream=prepared.stream,
        )


@attrs.frozen
class TurnResult:
    """The whole reply of a finished turn and the tokens it used."""

    text: str
    usage: Usage


def check_model(requested: str | None, served: str) -> None:
    """Accepts no model or the served one; any other model is an InvalidRequest."""
    if requested is not None and requested != served:
        raise InvalidRequest(f"Only configured model '{served}' is available", "model")
