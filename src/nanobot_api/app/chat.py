"""The chat use case: accept a request, run its turn, keep what it said."""

from __future__ import annotations

import anyio

from nanobot_api.app.sessions import SessionLocks
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import Message, TurnRecord, Usage
from nanobot_api.domain.errors import TurnTimedOut
from nanobot_api.domain.ports import (
    Agent,
    Attachments,
    PlainCompletion,
    Reply,
    SessionStore,
    SettlesUploads,
)
from nanobot_api.domain.turns import (
    EMPTY_REPLY_FALLBACK,
    ChatRequest,
    PreparedTurn,
    Turn,
    TurnResult,
    check_model,
)


class ChatService:
    """Runs turns of an agent against a session store; implements the ChatTurns port."""

    def __init__(
        self,
        agent: Agent,
        store: SessionStore,
        attachments: Attachments,
        *,
        timeout_s: float,
        max_history_messages: int | None = None,
    ) -> None:
        self._agent = agent
        self._store = store
        self._attachments = attachments
        self._timeout_s = timeout_s
        self._max_history_messages = max_history_messages
        self._locks = SessionLocks()

    @property
    def model(self) -> str:
        return self._agent.model

    async def prepare(self, request: ChatRequest) -> PreparedTurn:
        check_model(request.model, self.model)
        images, documents = await self._attachments.accept(request.uploads)
        return PreparedTurn(
            request.session,
            request.text,
            images,
            documents,
            user_turns=request.user_turns,
            task=request.task,
            conversation=request.conversation,
            stream=request.stream,
        )

    async def run(self, turn: PreparedTurn, reply: Reply) -> TurnResult:
        kept = False
        try:
            result = await self._run(turn, reply)
            kept = True
        finally:
            if (turn.images or turn.documents) and isinstance(self._attachments, SettlesUploads):
                # A failed or cancelled turn leaves no upload behind; shielded, so a
                # cancellation still removes them.
                with anyio.CancelScope(shield=True):
                    await self._attachments.turn_ended(turn.images, turn.documents, kept=kept)
        return result

    async def _run(self, turn: PreparedTurn, reply: Reply) -> TurnResult:
        recorder = _TurnRecorder(reply)
        try:
            # The budget covers the wait for the session too: a client sees one deadline.
            with anyio.fail_after(self._timeout_s):
                if turn.task is not None:
                    await self._answer_auxiliary(turn, recorder)
                else:
                    async with self._locks.hold(turn.session):
                        await self._run_turn(turn, recorder)
        except TimeoutError as exc:
            raise TurnTimedOut(f"Request timed out after {self._timeout_s:g}s") from exc
        return TurnResult(recorder.text, recorder.usage)

    async def _run_turn(self, turn: PreparedTurn, recorder: _TurnRecorder) -> None:
        record_user = user_message(turn)
        redo = await self._is_regenerate(turn, record_user)
        history = await self._store.history(turn.session, self._max_history_messages)
        if redo and history:
            history = history[:-1]
        await self._agent.respond(Turn.from_prepared(turn, history), recorder)
        if not recorder.text:
            await recorder.send_fallback()
        # Once the answer is complete it is kept, even if the deadline
        # or a disconnect lands while the store is writing.
        with anyio.CancelScope(shield=True):
            record = recorder.record(record_user)
            await self._store.commit(turn.session, record, replace_last=redo)

    async def _is_regenerate(self, turn: PreparedTurn, user: Message) -> bool:
        """A front end resending its conversation up to the latest turn asks to redo it."""
        if turn.user_turns is None:
            return False
        count, last = await self._store.last_turn(turn.session)
        return (
            last is not None
            and count == turn.user_turns
            and last.messages[0].content == user.content
        )

    async def _answer_auxiliary(self, turn: PreparedTurn, recorder: _TurnRecorder) -> None:
        """One plain answer to the request's own messages; no session is read or written."""
        if isinstance(self._agent, PlainCompletion):
            await self._agent.complete(turn.conversation, recorder)
        else:
            await self._agent.respond(Turn(turn.session, turn.text), recorder)

    @property
    def busy_sessions(self) -> int:
        """Sessions with a turn running or waiting (for diagnostics and tests)."""
        return len(self._locks)


def user_message(turn: PreparedTurn) -> Message:
    """The user message history keeps for a turn: its text and a note of its files."""
    note = attachment_note(turn.images, turn.documents)
    return Message.user(f"{turn.text}\n{note}" if note else turn.text)


def attachment_note(images: tuple[Image, ...], documents: tuple[Document, ...]) -> str:
    """The short mention of a turn's files that history keeps instead of their bytes."""
    notes = [f"[image: {i.filename or i.mime}, {len(i.data)} B]" for i in images]
    notes += [f"[document: {d.name}, {len(d.text)} chars]" for d in documents]
    return " ".join(notes)


class _TurnRecorder:
    """Passes an agent's reply through while keeping what the turn will commit."""

    def __init__(self, outer: Reply) -> None:
        self._outer = outer
        self._parts: list[str] = []
        self._messages: list[Message] = []
        self._fallback = False
        self.usage = Usage()

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def send(self, delta: str) -> None:
        if delta:
            self._parts.append(delta)
            await self._outer.send(delta)

    def add_usage(self, usage: Usage) -> None:
        self.usage += usage
        self._outer.add_usage(usage)

    def remember(self, message: Message) -> None:
        self._messages.append(message)
        # A stream that shows tool progress reads it from here (SilentReply ignores it).
        self._outer.remember(message)

    async def send_fallback(self) -> None:
        """The reply of a turn that produced no text, as the client will see it."""
        self._fallback = True
        await self.send(EMPTY_REPLY_FALLBACK)

    def record(self, user: Message) -> TurnRecord:
        """The turn for history: what the agent remembered, or else its whole reply."""
        if not self._messages:
            return TurnRecord((user, Message.assistant(self.text)))
        messages = list(self._messages)
        if self._fallback:
            # History shows the answer the client saw, not the agent's empty one.
            last = messages[-1]
            if last.role == "assistant" and not last.tool_calls and not last.content:
                messages.pop()
            messages.append(Message.assistant(EMPTY_REPLY_FALLBACK))
        return TurnRecord((user, *messages))
