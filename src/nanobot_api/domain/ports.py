"""The roles the core relies on, as Protocols. Adapters implement them; fakes too.

Every method takes and returns domain values and raises only domain errors
(``nanobot_api.domain.errors``); cancellation arrives as the async library's
cancellation exception and must be let through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from nanobot_api.domain.attachments import Document, ExtractedText, Image, Upload
from nanobot_api.domain.conversation import History, Message, TurnRecord, Usage
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.models import JsonObject, ModelRequest, ModelResponse, ToolContext, ToolSpec
from nanobot_api.domain.outbox import (
    Claim,
    DeliveryReceipt,
    OutboundMessage,
    OutboxEvent,
    OutboxStatus,
)
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.tools import ToolOutput
from nanobot_api.domain.turns import ChatRequest, PreparedTurn, Turn, TurnResult


class Reply(Protocol):
    """Where an agent writes its answer while it is being produced."""

    async def send(self, delta: str) -> None:
        """Streams ``delta`` to the caller now; the reply is all deltas joined."""

    def add_usage(self, usage: Usage) -> None:
        """Adds the tokens of one model call to the turn's total."""

    def remember(self, message: Message) -> None:
        """Records a message of this turn (a tool call, a tool result, the answer).

        An agent that records nothing gets one assistant message holding its whole
        reply. The messages are committed to history only if the turn completes.
        """


class Agent(Protocol):
    """Answers one turn of a session.

    Called at most once at a time per session, in arrival order. It may be cancelled
    at any await (client gone, time budget spent): it must then leave no state of its
    own behind that the next turn could see.
    """

    @property
    def model(self) -> str:
        """The model id clients see in /v1/models and may pin in requests."""

    async def respond(self, turn: Turn, reply: Reply) -> None:
        """Writes the answer to ``reply``; raises UpstreamFailed if its model failed."""


@runtime_checkable
class PlainCompletion(Protocol):
    """An agent that can also answer a conversation as one plain model call."""

    async def complete(self, messages: Sequence[Message], reply: Reply) -> None:
        """Answers exactly ``messages``: no system prompt, no history, no tools."""


class SessionStore(Protocol):
    """Durable per-session history."""

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; empty for a new key.

        With ``max_messages``, only the most recent whole turns holding at most that
        many messages.
        """

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, replace_last: bool = False
    ) -> None:
        """Appends a turn, or with ``replace_last`` puts it in place of the latest one.

        Durable on return: a restart, even after kill -9, still sees it; all of its
        messages or none are ever seen.
        """

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the session holds, and the latest of them (None if none)."""

    async def clear(self, key: SessionKey) -> int:
        """Forgets a session; returns how many turns it held."""

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session that holds a turn, with its count of turns."""


class Attachments(Protocol):
    """Turns uploads into what the agent receives: images, and documents as text."""

    async def accept(
        self, uploads: Sequence[Upload]
    ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
        """Checks, stores and converts every upload, or raises PayloadTooLarge,
        UnsupportedMediaType or InvalidRequest naming the first file refused."""


class DocumentReader(Protocol):
    """Gets the text out of a document (PDF, Word, Excel, PowerPoint)."""

    async def read(self, kind: FileKind, data: bytes, name: str) -> ExtractedText:
        """The document's text, keeping the structure a reader needs (page, sheet and
        slide headings; table rows as tab-separated cells). Runs off the event loop and
        within bounded time and memory: over a bound the text is cut short and marked
        ``truncated``, or the file is refused.

        Raises PayloadTooLarge (a zip bomb, too many archive members), InvalidRequest
        (a corrupt, encrypted or unreadable file, naming ``name`` and why) or
        UnsupportedMediaType (a kind this reader does not read).
        """


class MediaStore(Protocol):
    """Keeps a copy of every accepted file."""

    async def save(self, data: bytes, kind: FileKind, original_name: str | None) -> str:
        """Stores ``data`` and returns the path of the copy.

        The copy gets a fresh, unguessable name with ``kind``'s extension; the client's
        ``original_name`` is kept only as metadata, never as part of a path. The copy is
        complete when this returns, or absent: it never exists half written. A disk that
        refuses the write raises OSError (a server fault, not the client's).
        """


class ChatTurns(Protocol):
    """The chat use case as the HTTP adapter sees it."""

    @property
    def model(self) -> str:
        """The model id served."""

    async def prepare(self, request: ChatRequest) -> PreparedTurn:
        """Accepts a request or raises the domain error that refuses it; runs nothing."""

    async def run(self, turn: PreparedTurn, reply: Reply) -> TurnResult:
        """Runs the turn once its session is free, within the time budget.

        Raises TurnTimedOut or the agent's error. A turn that fails or is cancelled
        commits nothing to history.
        """


class ChatModel(Protocol):
    """A chat-completion model behind some provider."""

    async def complete(
        self, request: ModelRequest, on_delta: Callable[[str], Awaitable[None]]
    ) -> ModelResponse:
        """Asks the model once; awaits ``on_delta`` with each piece of answer text as it
        arrives, then returns the whole assistant message (text and tool calls) and the
        tokens the provider reported for this call.

        Raises UpstreamFailed when the provider refuses, fails, times out or breaks off
        (the message names the upstream status, never a credential). Transient refusals
        (429, 5xx) are retried only while the caller's deadline leaves time for it.
        """


class Tool(Protocol):
    """Something the model may call during a turn."""

    @property
    def spec(self) -> ToolSpec:
        """Its name, its description and the JSON schema of its arguments."""

    async def call(self, arguments: JsonObject, context: ToolContext) -> str | ToolOutput:
        """Does the work with arguments already checked against ``spec.parameters``
        (by a JSON Schema validator); returns the text (or text and images) the model
        reads as the result. A refusal the model should see is returned (or raised as a
        NanobotError, whose message it sees)."""


class ReadinessCheck(Protocol):
    """A part of the server that may be degraded while the API still serves."""

    def readiness(self) -> dict[str, str]:
        """Each component this part names (``mcp.files``) and ``"ready"``, or a short
        reason it is not (never holding a configured secret). Cheap: read on every
        ``/health/ready``."""


class ToolServer(Protocol):
    """A live connection to a server of tools (an MCP server), opened by a
    ``ToolServerConnector`` and usable from any task until that closes it."""

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        """Every tool the server offers, under its own (raw) name, with its description
        and input JSON Schema. Raises ToolServerFailed if the server cannot answer."""

    async def call_tool(self, name: str, arguments: JsonObject) -> ToolOutput:
        """Runs the tool; its result, bounded (the server's own errors as ``is_error``
        results). Raises ToolServerFailed when the connection is lost or broken, and
        lets cancellation (a timeout around it) through."""


class ToolServerConnector(Protocol):
    """Starts (a command) or reaches (a URL) one configured tool server."""

    def connect(self) -> AbstractAsyncContextManager[ToolServer]:
        """A connection, ready on entry, closed (its process stopped) on exit; entry and
        exit happen in the same task. Entry raises ToolServerFailed if the server cannot
        be started or reached, or does not complete the handshake."""


class OutboundChannel(Protocol):
    """A chat platform (or any receiver) the ``message`` tool can deliver to."""

    @property
    def name(self) -> str:
        """The channel's name, as the model writes it in ``message(channel=...)``."""

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Delivers ``message`` (its text split to fit the platform, then its files),
        starting after ``message.progress`` steps, within the channel's own timeout.

        Raises DeliveryFailed: ``retryable`` for a 429, a 5xx, a timeout or a lost
        connection (with the platform's Retry-After, if any), not for a refusal; its
        ``progress`` counts the steps that did get through. Its message never holds a
        credential.
        """


class Outbox(Protocol):
    """Durable outbound events, as the delivery side sees them."""

    async def enqueue(self, event: OutboxEvent) -> None:
        """Stores a new event. Durable on return (even against kill -9): delivery may be
        tried only after this returns."""

    async def claim_due(self, now: float, limit: int, exclude: Collection[str] = ()) -> Claim:
        """Takes up to ``limit`` pending events due at ``now`` (oldest due first), leaving
        out the ids in ``exclude`` (those already being delivered), and counts an attempt
        on each (``domain.outbox.claimed``), durably, before returning them. Also says when
        the next pending event not taken falls due."""

    async def settle(self, event: OutboxEvent) -> bool:
        """Writes the event's new state (status, attempts, progress, times, last error);
        durable on return. False if the event is gone (dropped meanwhile)."""


class OutboxAdmin(Protocol):
    """The outbox as an operator sees it."""

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        """Every event (or those with ``status``), oldest first."""

    async def retry(self, event_id: str, now: float) -> OutboxEvent:
        """Makes the event pending and due now with its attempts afresh
        (``domain.outbox.retried``); raises NotFound for an unknown id."""

    async def drop(self, event_id: str) -> OutboxEvent:
        """Deletes the event and returns it as it was; raises NotFound for an unknown id."""
