"""The roles the core relies on, as Protocols. Adapters implement them; fakes too.

Every method takes and returns domain values and raises only domain errors
(``nanobot_api.domain.errors``); cancellation arrives as the async library's
cancellation exception and must be let through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nanobot_api.domain.attachments import Document, Image, Upload
from nanobot_api.domain.conversation import History, Message, TurnRecord, Usage
from nanobot_api.domain.sessions import SessionKey
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


class SessionStore(Protocol):
    """Durable per-session history."""

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; empty for a new key.

        With ``max_messages``, only the most recent whole turns holding at most that
        many messages.
        """

    async def commit(self, key: SessionKey, record: TurnRecord) -> None:
        """Appends a turn. Durable on return: a restart, even after kill -9, still sees it;
        all of its messages or none are ever seen."""

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
