"""The chat use case: accept a request, run its turn, keep what it said."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
import attrs

from nanobot_api.app.drain import TurnGate
from nanobot_api.app.sessions import BusyPolicy, SessionTurns
from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.branches import Followed, active_branch, follow
from nanobot_api.domain.client import ClientInstructionsMode
from nanobot_api.domain.conversation import (
    MAX_HISTORY_BYTES,
    History,
    Message,
    ToolCall,
    TurnRecord,
    Usage,
    bounded_history,
)
from nanobot_api.domain.errors import InvalidRequest, NanobotError, TurnTimedOut
from nanobot_api.domain.models import ToolCallPiece, ToolSpec
from nanobot_api.domain.pauses import (
    check_not_late,
    check_resent,
    check_results,
    closed,
    expired,
    is_paused,
    pending_calls,
    with_results,
)
from nanobot_api.domain.ports import (
    Agent,
    Attachments,
    PlainCompletion,
    Reply,
    ServesTools,
    SessionLeases,
    SessionStore,
    SettlesUploads,
    StreamsToolCalls,
    Telemetry,
    TracksRunningSessions,
)
from nanobot_api.domain.redaction import Redactor, StreamRedactor
from nanobot_api.domain.sessions import Lease, SessionKey
from nanobot_api.domain.turns import (
    DEFAULT_MAX_REPLY_CHARS,
    DEFAULT_TOOL_RESULT_TIMEOUT_S,
    EMPTY_REPLY_FALLBACK,
    ChatRequest,
    PreparedTurn,
    ReplyBound,
    Turn,
    TurnResult,
    check_model,
)


class ChatService:
    """Runs turns of an agent against a session store; implements the ChatTurns port.

    What leaves a turn is bounded and clean: the reply is cut at ``max_reply_chars``
    (with a marker saying so; the turn still answers), every secret of ``redactor`` is
    masked in the reply, in what history keeps and in the turn's error, and the history
    an agent is given holds at most ``max_history_bytes`` (oldest whole turns go first),
    so no session can grow too large for its model.
    """

    def __init__(
        self,
        agent: Agent,
        store: SessionStore,
        attachments: Attachments,
        *,
        timeout_s: float,
        max_history_messages: int | None = None,
        gate: TurnGate | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
        max_history_bytes: int | None = MAX_HISTORY_BYTES,
        max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS,
        redactor: Redactor | None = None,
        client_instructions: ClientInstructionsMode = "append",
        tool_result_timeout_s: float = DEFAULT_TOOL_RESULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        busy: BusyPolicy = "queue",
        lease_s: float = 30.0,
    ) -> None:
        self._agent = agent
        self._gate = gate or TurnGate()
        self._telemetry = telemetry
        self._store = store
        self._attachments = attachments
        # Looked up once: the media bound spares the uploads of sessions at work.
        self._running = (
            attachments.session_running if isinstance(attachments, TracksRunningSessions) else None
        )
        self._timeout_s = timeout_s
        self._max_history_messages = max_history_messages
        self._max_history_bytes = max_history_bytes
        self._bound = ReplyBound(max_reply_chars)
        self._redactor = redactor or Redactor()
        self._client_instructions = client_instructions
        self._tool_result_timeout_s = tool_result_timeout_s
        self._clock = clock
        # A store that also keeps leases orders each session's turns across processes.
        leases = store if isinstance(store, SessionLeases) else None
        self._locks = SessionTurns(leases, busy=busy, lease_s=lease_s)

    @property
    def model(self) -> str:
        return self._agent.model

    @property
    def gate(self) -> TurnGate:
        """Where the server's drain closes to new turns and cancels late ones."""
        return self._gate

    async def prepare(self, request: ChatRequest) -> PreparedTurn:
        self._gate.admit()  # before any upload is stored
        check_model(request.model, self.model)
        options = request.options
        if self._client_instructions == "ignore":
            options = options.without_instructions()
        if options.tools and isinstance(self._agent, ServesTools):
            check_tool_names(options.tools, self._agent.server_tools)
        if request.continues:
            # Checked again under the session's lock; here so a stream is refused with
            # a 400 before it starts.
            await self._check_results(request)
        images, documents = await self._attachments.accept(request.uploads, request.session)
        return PreparedTurn(
            request.session,
            request.text,
            images,
            documents,
            shown=request.shown,
            task=request.task,
            conversation=request.conversation,
            stream=request.stream,
            options=options,
            tool_results=request.tool_results,
            continues=request.continues,
        )

    async def _check_results(self, request: ChatRequest) -> None:
        _, last = await self._store.last_turn(request.session)
        if last is not None and expired(last, self._clock(), self._tool_result_timeout_s):
            check_not_late(last, request.tool_results)
            last = None  # expired: its calls no longer wait
        check_resent(last, request.resent_calls, f"messages[{request.resent_at}]")
        check_results(last, request.tool_results)

    async def run(self, turn: PreparedTurn, reply: Reply) -> TurnResult:
        kept = False
        recorder = _TurnRecorder(reply, self._bound, self._redactor)
        outcome = "cancelled"
        self._telemetry.turn_started()
        try:
            async with self._gate.turn():
                try:
                    with self._telemetry.span("turn"):
                        result = await self._run(turn, recorder)
                except Exception:
                    outcome = "error"
                    raise
            kept = True
            outcome = "ok"
        finally:
            first_s = None if recorder.first_at is None else recorder.first_at - recorder.started
            usage = recorder.usage
            self._telemetry.turn_ended(
                time.monotonic() - recorder.started,
                first_s,
                outcome,
                usage.prompt_tokens + usage.completion_tokens,
            )
            if (turn.images or turn.documents) and isinstance(self._attachments, SettlesUploads):
                # A failed or cancelled turn leaves no upload behind; shielded, so a
                # cancellation still removes them.
                with anyio.CancelScope(shield=True):
                    await self._attachments.turn_ended(turn.images, turn.documents, kept=kept)
        return result

    async def _run(self, turn: PreparedTurn, recorder: _TurnRecorder) -> TurnResult:
        try:
            # The budget covers the wait for the session too: a client sees one deadline.
            with anyio.fail_after(self._timeout_s):
                if turn.task is not None:
                    await self._answer_auxiliary(turn, recorder)
                else:
                    waiting = time.monotonic()
                    async with self._locks.hold(turn.session) as lease:
                        self._telemetry.session_waited(time.monotonic() - waiting)
                        if self._running is None:
                            await self._run_turn(turn, recorder, lease)
                        else:
                            with self._running(turn.session):
                                await self._run_turn(turn, recorder, lease)
        except TimeoutError as exc:
            raise TurnTimedOut(f"Request timed out after {self._timeout_s:g}s") from exc
        except NanobotError as exc:
            # An upstream's error text may quote a credential back: the client, the
            # stream's error event and the log all take their words from here.
            if self._redactor:
                exc.message = self._redactor(exc.message)
                exc.args = (exc.message,)
            raise
        await recorder.finish()
        calls = recorder.waiting
        if self._redactor:
            calls = tuple(
                attrs.evolve(call, arguments=self._redactor(call.arguments)) for call in calls
            )
        return TurnResult(recorder.text, recorder.usage, calls)

    async def _run_turn(
        self, turn: PreparedTurn, recorder: _TurnRecorder, lease: Lease | None = None
    ) -> None:
        # Every write of this turn carries its lease (fencing): see SessionStore.commit.
        fence: dict[str, Lease] = {} if lease is None else {"lease": lease}
        history = await self._store.history(turn.session, self._max_history_messages)
        last = history[-1] if history else None
        if last is not None and is_paused(last):
            now = self._clock()
            if turn.continues and not expired(last, now, self._tool_result_timeout_s):
                await self._resume(
                    turn, history, with_results(last, turn.tool_results), recorder, fence
                )
                return
            # A new message (or results too late) closes the pause first.
            last = closed(last)
            with anyio.CancelScope(shield=True):
                await self._replace_last(turn.session, last, fence)
            history = (*history[:-1], last)
        if turn.continues:
            check_results(None, turn.tool_results)  # nothing waits: refused, naming it
        shown = turn.shown
        followed: Followed | None = None
        if shown.whole or shown.ids.any:
            # The request says which branch it continues (domain/branches.py).
            followed = follow(shown, await self._store.turns(turn.session))
            history = bounded_history(followed.history, self._max_history_messages)
        await self._agent.respond(Turn.from_prepared(turn, self._bounded(history)), recorder)
        await self._keep(turn, recorder, (user_message(turn),), fence, followed=followed)

    async def _resume(
        self,
        turn: PreparedTurn,
        history: History,
        record: TurnRecord,
        recorder: _TurnRecorder,
        fence: dict[str, Lease],
    ) -> None:
        """A paused turn goes on from its messages and the client's results."""
        resumed = Turn.from_prepared(turn, self._bounded(history[:-1]))
        await self._agent.respond(attrs.evolve(resumed, resumed=record.messages), recorder)
        await self._keep(turn, recorder, record.messages, fence, replace=True)

    def _bounded(self, history: History) -> History:
        if self._max_history_bytes is not None:
            history = bounded_history(history, max_bytes=self._max_history_bytes)
        return history

    async def _keep(
        self,
        turn: PreparedTurn,
        recorder: _TurnRecorder,
        head: tuple[Message, ...],
        fence: dict[str, Lease],
        *,
        followed: Followed | None = None,
        replace: bool = False,
    ) -> None:
        """Commits the turn: appended, in place of the paused turn it finishes
        (``replace``), or after the branch the request follows."""
        await recorder.finish()
        paused_at = self._clock() if recorder.waiting else None
        if not recorder.text and paused_at is None:
            await recorder.send_fallback()
        # Once the answer is complete it is kept, even if the deadline
        # or a disconnect lands while the store is writing.
        with anyio.CancelScope(shield=True):
            record = attrs.evolve(recorder.record(head), paused_at=paused_at)
            with self._telemetry.span("store commit"):
                if replace:
                    await self._replace_last(turn.session, record, fence)
                elif followed is None:
                    await self._store.commit(turn.session, record, **fence)
                else:
                    kept = [t.no for t in followed.kept]
                    await self._store.commit_branch(
                        turn.session, kept, followed.imported, record, turn.shown.ids, **fence
                    )

    async def _replace_last(
        self, session: SessionKey, record: TurnRecord, fence: dict[str, Lease]
    ) -> None:
        """Puts ``record`` in place of the active branch's latest turn (a paused turn
        going on or closed); the old version stays stored, superseded."""
        branch = active_branch(await self._store.turns(session))
        kept = [stored.no for stored in branch[:-1]]
        await self._store.commit_branch(session, kept, (), record, branch[-1].ids, **fence)

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


def check_tool_names(tools: Sequence[ToolSpec], server: frozenset[str]) -> None:
    """Refuses a client tool named like one the server runs itself."""
    for index, spec in enumerate(tools):
        if spec.name in server:
            param = f"tools[{index}].function.name"
            raise InvalidRequest(
                f"{param} '{spec.name}' is the name of a server tool; give the client's "
                "tool another name",
                param,
            )


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
    """Passes an agent's reply through while keeping what the turn will commit; the
    reply is cut at its bound and masked of secrets on the way."""

    def __init__(self, outer: Reply, bound: ReplyBound, redactor: Redactor) -> None:
        self._outer = outer
        self._bound = bound
        self._redactor = redactor
        self._masking = redactor.stream()
        self._parts: list[str] = []
        self._length = 0
        self._cut = False
        self._messages: list[Message] = []
        self._fallback = False
        # Each client call's arguments are masked as a text of their own, as they stream.
        self._call_masks: dict[int, StreamRedactor] = {}
        self.usage = Usage()
        self.started = time.monotonic()
        self.first_at: float | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def send(self, delta: str) -> None:
        if not delta or self._cut:
            return
        room = self._bound.max_chars - self._length
        if len(delta) > room:
            delta = delta[:room] + self._bound.marker
            self._cut = True
        await self._write(self._masking.feed(delta))

    async def _write(self, text: str) -> None:
        if text:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self._parts.append(text)
            self._length += len(text)
            await self._outer.send(text)

    async def send_call(self, piece: ToolCallPiece) -> None:
        if not isinstance(self._outer, StreamsToolCalls):
            return
        if piece.starts_call:
            # The model went on from its text to its calls: what the text held back
            # (it could have begun a secret) is final, and is shown before the call.
            await self._write(self._masking.flush())
        masking = self._call_masks.setdefault(piece.index, self._redactor.stream())
        arguments = masking.feed(piece.arguments)
        # What is held back goes with the whole call at the end (see StreamsToolCalls).
        if piece.starts_call or arguments:
            await self._outer.send_call(attrs.evolve(piece, arguments=arguments))

    async def finish(self) -> None:
        """Lets go of the text held back while it could have been part of a secret."""
        await self._write(self._masking.flush())

    def add_usage(self, usage: Usage) -> None:
        self.usage += usage
        self._outer.add_usage(usage)

    def remember(self, message: Message) -> None:
        self._messages.append(message)
        # A stream that shows tool progress reads it from here (SilentReply ignores it),
        # masked as history keeps it.
        self._outer.remember(self._shown(message))

    async def send_fallback(self) -> None:
        """The reply of a turn that produced no text, as the client will see it."""
        self._fallback = True
        await self.send(EMPTY_REPLY_FALLBACK)
        await self.finish()

    @property
    def waiting(self) -> tuple[ToolCall, ...]:
        """The client's tool calls the turn stopped on (the agent ran all others)."""
        return pending_calls(self._messages)

    def record(self, head: tuple[Message, ...]) -> TurnRecord:
        """The turn for history: ``head`` (its user message, or a paused turn's messages
        so far), then what the agent remembered, or else its whole reply."""
        if not self._messages:
            return TurnRecord((*head, Message.assistant(self.text)))
        messages = [self._kept(message) for message in self._messages]
        if self._cut and messages[-1].role == "assistant" and messages[-1].content:
            # The client saw the reply end with the marker. A model answer cut at the
            # bound while streaming is left exactly that long, which _kept would keep
            # unmarked: history must show it was cut too.
            content = messages[-1].content
            if not content.endswith(self._bound.marker):
                content = content[: self._bound.max_chars] + self._bound.marker
                messages[-1] = attrs.evolve(messages[-1], content=content)
        if self._fallback:
            # History shows the answer the client saw, not the agent's empty one.
            last = messages[-1]
            if last.role == "assistant" and not last.tool_calls and not last.content:
                messages.pop()
            messages.append(Message.assistant(EMPTY_REPLY_FALLBACK))
        return TurnRecord((*head, *messages))

    def _shown(self, message: Message) -> Message:
        """A message of the running turn as a stream may show it: masked."""
        if not self._redactor:
            return message
        calls = tuple(
            attrs.evolve(call, arguments=self._redactor(call.arguments))
            for call in message.tool_calls
        )
        content = None if message.content is None else self._redactor(message.content)
        return attrs.evolve(message, content=content, tool_calls=calls)

    def _kept(self, message: Message) -> Message:
        """A message as history keeps it: bounded like the reply, and masked."""
        content = message.content
        if content is None or (not self._redactor and len(content) <= self._bound.max_chars):
            return message
        return attrs.evolve(message, content=self._redactor(self._bound.cut(content)))
