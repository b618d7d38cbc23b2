"""The Responses use case: a chat turn with an id, a record, and steps that can be followed.

A response runs as a chat turn (same sessions, intake, agent and time budget) while
a Reply of its own turns what the agent writes into steps. A foreground response
runs in its request's task (or, streamed, in a task its stream follows and cancels
when its client leaves); a background one runs in a task of the server's, whatever
the client does, writes its steps to the ResponseLog as they come, and can be
followed from any process: here from memory, elsewhere by polling the log.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import anyio
import anyio.lowlevel
import attrs

from nanobot_api.domain.attachments import Document
from nanobot_api.domain.conversation import Message, TurnRecord, Usage
from nanobot_api.domain.errors import InvalidRequest, NotFound
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.ports import (
    ChatTurns,
    PausedCalls,
    ResponseLog,
    ResponseRun,
    ResponseStore,
    RunLiveness,
    SessionStore,
    TurnHold,
)
from nanobot_api.domain.responses import (
    CallPiece,
    ClientCall,
    Ended,
    ResponseError,
    ResponseRecord,
    ResponseRequest,
    ResponseStep,
    TextDelta,
    apply_step,
    check_continuation,
    ended,
    is_latest_turn,
    lost_its_run,
    tool_progress,
)
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import PreparedTurn, TurnResult

log = logging.getLogger(__name__)

Spawn = Callable[[Callable[[], Awaitable[None]]], None]
"""Starts a coroutine function as a task of the server's, outliving the request."""
DescribeFailure = Callable[[BaseException], ResponseError]
"""How a failed turn's error reads in the response (the HTTP adapter's error types)."""

CANCELLED: Final = ResponseError("cancelled", "The response was cancelled")
INTERRUPTED: Final = ResponseError("server_error", "The response was interrupted")
# How often a follower in another process looks for new steps, and a background run
# for a cancellation asked for in another process.
POLL_S: Final = 0.2
# How long a background run's word that it still runs holds (storage.leaseS): renewed
# every third of it, so a process that dies leaves its response running at most this.
LEASE_S: Final = 30.0


async def _nothing() -> None:
    pass


class LiveRun:
    """A response running in this process: its record, its steps so far, and a wake-up
    for whoever follows them."""

    def __init__(
        self, record: ResponseRecord, *, persist: bool, documents: tuple[Document, ...] = ()
    ) -> None:
        self.record = record
        self.first = record
        self.documents = documents
        self.steps: list[ResponseStep] = []
        self.persist = persist
        self.written = 0
        self.done = False
        self.failure: BaseException | None = None
        # The response as another process ended it (this run had stopped vouching).
        self.ended_elsewhere: ResponseRecord | None = None
        self.scope = anyio.CancelScope()
        self._changed = anyio.Event()
        self._finished = anyio.Event()

    def add(self, step: ResponseStep) -> None:
        self.steps.append(step)
        self.record = apply_step(self.record, step)
        self._changed.set()
        self._changed = anyio.Event()

    def finish(self, record: ResponseRecord) -> None:
        self.record = record
        self.done = True
        self._changed.set()
        self._finished.set()

    async def wait_for_more(self, seen: int) -> None:
        """Returns once there are more than ``seen`` steps, or the run is over."""
        while len(self.steps) <= seen and not self.done:
            await self._changed.wait()

    async def finished(self) -> ResponseRecord:
        await self._finished.wait()
        return self.record


class _StepReply:
    """The Reply of a response's turn: text, tool steps and the pieces of the client's
    calls become the run's steps (StreamsToolCalls: a call shows as the model writes it)."""

    def __init__(
        self, run: LiveRun, redact: Callable[[str], str], client_tools: frozenset[str]
    ) -> None:
        self._run = run
        self._redact = redact
        self._client_tools = client_tools
        self._names: dict[str, str] = {}

    async def send(self, delta: str) -> None:
        if delta:
            self._run.add(TextDelta(delta))
            await anyio.lowlevel.checkpoint()  # let a follower write it before the next

    async def send_call(self, piece: ToolCallPiece) -> None:
        self._run.add(CallPiece(piece))
        await anyio.lowlevel.checkpoint()

    def add_usage(self, usage: Usage) -> None:
        pass  # the turn's result carries the total

    def remember(self, message: Message) -> None:
        for step in tool_progress(message, self._names):
            # The client's own tools are its function_call items, not the agent's steps.
            if step.name not in self._client_tools:
                self._run.add(attrs.evolve(step, summary=self._redact(step.summary)))


class ResponsesService:
    """Creates, runs, follows, cancels and forgets responses; the ResponseTurns port."""

    def __init__(
        self,
        turns: ChatTurns,
        sessions: SessionStore,
        store: ResponseStore,
        steps: ResponseLog,
        *,
        paused: PausedCalls,
        liveness: RunLiveness,
        spawn: Spawn,
        new_id: Callable[[], str],
        describe_failure: DescribeFailure,
        redact: Callable[[str], str] = str,
        poll_s: float = POLL_S,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._turns = turns
        self._sessions = sessions
        self._store = store
        self._log = steps
        self._spawn = spawn
        self._new_id = new_id
        self._describe = describe_failure
        self._redact = redact
        self._poll_s = poll_s
        self._lease_s = lease_s
        self._clock = clock
        self._liveness = liveness
        self._live: dict[str, LiveRun] = {}
        self._paused = paused

    @property
    def model(self) -> str:
        return self._turns.model

    async def create(
        self, request: ResponseRequest, channel: str, hold: TurnHold | None = None
    ) -> LiveRun:
        """Accepts the request and starts its turn; raises the error refusing it.

        A background or streamed response is running when this returns; any other has
        finished (follow the returned run, or await ``run.finished()``).
        """
        if request.background and not request.store:
            raise InvalidRequest("background responses need store: true", "store")
        response_id = self._new_id()
        session = await self._session_for(request, response_id, channel)
        chat = attrs.evolve(request.chat, session=session, stream=True)
        prepared = await self._turns.prepare(chat)
        record = ResponseRecord(
            id=response_id,
            session=session,
            model=self._turns.model,
            created_at=self._clock(),
            status="queued" if request.background else "in_progress",
            background=request.background,
            named=request.named is not None,
            previous_response_id=request.previous_response_id,
            instructions=request.instructions,
            input=request.input,
            alive_until=self._clock() + self._lease_s if request.background else None,
        )
        if request.background:
            # Stored before the answer, so any process can read and follow it at once.
            # A foreground response is read from here while it runs (and its record
            # is stored when it ends), which keeps a store write off its first event.
            await self._store.put(record)
        run = LiveRun(record, persist=request.background, documents=prepared.documents)
        store = request.store
        if request.background or request.stream:
            self._live[response_id] = run

            # A background turn keeps its place under the limits until it ends.
            release = hold.keep() if hold is not None and request.background else None

            async def execute() -> None:
                await self._execute(run, prepared, store=store, release=release or _nothing)

            self._spawn(execute)
        else:
            await self._execute(run, prepared, store=store)
        return run

    async def _session_for(
        self, request: ResponseRequest, response_id: str, channel: str
    ) -> SessionKey:
        if request.previous_response_id is None:
            if request.named is None and request.chat.tool_results:
                # Tool results with no conversation named: a client resending its whole
                # conversation (the Agents SDK does, within a run). The store knows
                # which session paused on these calls, whichever process ran it.
                calls = [r.tool_call_id for r in request.chat.tool_results if r.tool_call_id]
                paused = await self._paused.find(calls, channel)
                if paused is not None:
                    return paused
            # No conversation named: a new one, named after this response, so that a
            # chain of previous_response_id is one conversation.
            named = request.named
            return SessionKey(channel, named.session_id if named else response_id)
        live = self._live.get(request.previous_response_id)
        if live is not None and live.steps and isinstance(live.steps[-1], Ended):
            await live.finished()  # its stream has ended: its record is a moment away
        previous = await self.retrieve(
            request.previous_response_id, channel, param="previous_response_id"
        )
        count, answer = await self._session_state(previous.session)
        named = request.named and SessionKey(channel, request.named.session_id)
        latest = None
        if not previous.running and not is_latest_turn(previous, count, answer):
            # Refused: the error names the response to continue from, if one is.
            found = await self._store.latest(previous.session)
            if found is not None and is_latest_turn(found, count, answer):
                latest = found.id
        return check_continuation(previous, named, count, answer, latest)

    async def _session_state(self, session: SessionKey) -> tuple[int, str | None]:
        """The session's count of (active) turns and its latest turn's answer."""
        history = await self._sessions.history(session)
        return len(history), _last_answer(history[-1] if history else None)

    async def retrieve(
        self, response_id: str, channel: str, param: str = "response_id"
    ) -> ResponseRecord:
        """The response as it stands; NotFound if unknown, deleted, or another caller's."""
        live = self._live.get(response_id)
        record = live.record if live is not None else await self._stored(response_id)
        if record is None or record.session.channel != channel:
            raise NotFound(f"No response found with id '{response_id}'", param)
        return record

    async def _stored(self, response_id: str) -> ResponseRecord | None:
        """The stored response; one whose process died while it ran is ended here, as
        its steps show (interrupted, unless its last step was written)."""
        record = await self._store.get(response_id)
        now = self._clock()
        if record is None or not lost_its_run(record, now):
            return record
        steps = await self._log.read(record.id)
        if not steps or not isinstance(steps[-1], Ended):
            # Its last step first, so that its followers see it end.
            steps += (Ended("failed", record.usage, INTERRUPTED),)
            await self._log.append(record.id, len(steps) - 1, steps[-1:])
        final = functools.reduce(apply_step, steps, record)
        if await self._liveness.interrupt(final, now):
            log.warning("response %s: its run stopped vouching for it; interrupted", record.id)
        return await self._store.get(response_id)

    async def follow(
        self, run: ResponseRun | str, channel: str, idle_s: float = 0
    ) -> AsyncIterator[ResponseStep | None]:
        """Every step of the response from its first, then the live ones until it ends:
        from memory when it runs here, else from the log (polled while it runs). None
        after each ``idle_s`` of silence (0: never), so a stream can keep its line alive.
        """
        if isinstance(run, str):
            record = await self.retrieve(run, channel)
            live = self._live.get(run)
            if live is None:
                async for step in self._replay(record, idle_s):
                    yield step
                return
            run = live
        assert isinstance(run, LiveRun)
        seen = 0
        while True:
            with anyio.move_on_after(idle_s or math.inf) as idle:
                await run.wait_for_more(seen)
            if idle.cancelled_caught:
                yield None
                continue
            while seen < len(run.steps):
                seen += 1
                step = run.steps[seen - 1]
                yield step
                if isinstance(step, Ended):
                    return  # its record is being kept; the stream need not wait for it
            if run.done and seen == len(run.steps):
                return

    async def _replay(
        self, record: ResponseRecord, idle_s: float
    ) -> AsyncIterator[ResponseStep | None]:
        seen = -1
        quiet_since = time.monotonic()
        while True:
            steps = await self._log.read(record.id, seen)
            for step in steps:
                seen += 1
                yield step
                if isinstance(step, Ended):
                    return
            if steps:
                quiet_since = time.monotonic()
                continue
            current = await self._stored(record.id)
            if current is None or not current.running:
                # Its last steps are written before its record: read once more.
                last = await self._log.read(record.id, seen)
                if seen == -1 and not last and current is not None:
                    # A response that kept no steps (it ran in the foreground).
                    last = steps_of(current)
                for step in last:
                    yield step
                    if isinstance(step, Ended):
                        return
                return
            if idle_s and time.monotonic() - quiet_since >= idle_s:
                quiet_since = time.monotonic()
                yield None
            await anyio.sleep(self._poll_s)

    async def cancel(self, response_id: str, channel: str) -> ResponseRecord:
        """Cancels a background response wherever it runs; a finished one is returned as
        it is. Raises NotFound, or InvalidRequest for one not run in the background."""
        record = await self.retrieve(response_id, channel)
        if not record.background:
            raise InvalidRequest("Only background responses can be cancelled", "response_id")
        marked = await self._store.request_cancel(response_id)
        live = self._live.get(response_id)
        if live is not None:
            live.scope.cancel()
            return await live.finished()
        if marked is not None and marked.running:
            marked = await self._stored(response_id)  # a run whose process died ends here
        if marked is None or not marked.running:
            return marked or record
        # Another process runs it and sees the mark within a poll; wait a little for it.
        with anyio.move_on_after(self._poll_s * 10):
            while True:
                await anyio.sleep(self._poll_s / 2)
                current = await self._store.get(response_id)
                if current is None or not current.running:
                    return current or marked
        return marked

    def abandon(self, run: ResponseRun) -> None:
        """The client of a streamed foreground response left: its turn is cancelled (and
        leaves no trace). A background response runs on."""
        if isinstance(run, LiveRun) and not run.record.background:
            run.scope.cancel()

    async def delete(self, response_id: str, channel: str) -> None:
        """Forgets a stored response (its conversation keeps its turn); NotFound if none."""
        await self.retrieve(response_id, channel)
        if not await self._store.delete(response_id):
            raise NotFound(f"No response found with id '{response_id}'", "response_id")

    async def _execute(
        self,
        run: LiveRun,
        prepared: PreparedTurn,
        *,
        store: bool,
        release: Callable[[], Awaitable[None]] = _nothing,
    ) -> None:
        """Runs the turn, then lets go of what it held (``release``) before it ends
        the run: whoever sees the response ended may start another turn at once."""
        client_tools = frozenset(tool.name for tool in prepared.options.tools)
        reply = _StepReply(run, self._redact, client_tools)
        result: TurnResult | None = None
        failure: Exception | None = None
        try:
            with run.scope:
                async with anyio.create_task_group() as group:
                    if run.persist:
                        group.start_soon(self._keep_writing, run)
                        group.start_soon(self._watch_for_cancel, run)
                        group.start_soon(self._vouch_for, run)
                    if store and run.record.status == "queued":
                        run.record = attrs.evolve(run.record, status="in_progress")
                        await self._store.put(run.record)
                    try:
                        result = await self._turns.run(prepared, reply)
                    except Exception as exc:
                        failure = exc
                    group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # The client of a foreground response left, or the server is stopping.
            with anyio.CancelScope(shield=True):
                await release()
                await self._end(run, Ended("failed", Usage(), INTERRUPTED), store=store)
            raise
        except Exception as exc:  # a store write of the run's own failed
            failure = exc
        with anyio.CancelScope(shield=True):
            await release()
            if result is not None:
                # The client's own tools the model called: the turn waits for their
                # results (function_call items; the next response carries the outputs).
                for call in result.tool_calls:
                    run.add(ClientCall(call))
                if result.tool_calls or prepared.tool_results:
                    # Which calls the session now waits for (none once answered), for a
                    # client that resends everything to any process.
                    await self._note_paused(prepared.session, result)
                # Finished, even if a cancel landed after it: its turn is committed.
                completed = Ended("completed", result.usage)
                await self._end(run, completed, prepared.session, store=store)
                if not store and not result.tool_calls:
                    await self._forget_unstored(run.record.id, prepared.session)
            elif failure is not None:
                run.failure = failure
                await self._end(run, Ended("failed", error=self._describe(failure)), store=store)
            elif run.ended_elsewhere is not None:
                # What the store says stands: its followers have seen that end.
                stored = run.ended_elsewhere
                run.add(Ended(stored.status, stored.usage, stored.error))
                self._live.pop(stored.id, None)
                run.finish(stored)
            else:
                await self._end(run, Ended("cancelled", error=CANCELLED), store=store)

    async def _end(
        self, run: LiveRun, end: Ended, committed: SessionKey | None = None, *, store: bool
    ) -> None:
        """Ends the run: its last step first (its stream ends at once), then its record
        (with the number of its turn in ``committed``, if it committed one)."""
        run.add(end)
        record = ended(run.record, end)
        try:
            if store and committed is not None:
                count, _ = await self._session_state(committed)
                record = attrs.evolve(record, turn_no=count)
            if run.persist:
                await self._write_steps(run)
            if store:
                await self._store.put(attrs.evolve(record, cancel_requested=False))
        finally:
            self._live.pop(record.id, None)
            run.finish(record)

    async def _forget_unstored(self, response_id: str, session: SessionKey) -> None:
        """Forgets the session a ``store: false`` response made for itself alone (named
        after it): no one can continue it (the response cannot be retrieved or named as
        previous), so a client sending every call that way must not pile up a listed
        session per call. The caller keeps one paused on client tools, for the call
        that brings their results."""
        if session.session_id != response_id:
            return  # a conversation the client named or continued: it stays
        try:
            await self._sessions.clear(session)
        except Exception:
            # The answer stands; the session is left as any other (listed, deletable).
            log.warning("could not forget the unstored session %s", session, exc_info=True)

    async def _note_paused(self, session: SessionKey, result: TurnResult) -> None:
        try:
            await self._paused.note(session, [call.id for call in result.tool_calls])
        except Exception:
            # The turn is committed; only a resend naming no conversation will miss it.
            log.warning("could not note the client tool calls of %s", session, exc_info=True)

    async def _keep_writing(self, run: LiveRun) -> None:
        """Writes a background run's steps to the log as they come, a batch at a time."""
        while True:
            await run.wait_for_more(run.written)
            await self._write_steps(run)

    async def _write_steps(self, run: LiveRun) -> None:
        batch = run.steps[run.written :]
        if batch:
            await self._log.append(run.record.id, run.written, batch)
            run.written += len(batch)

    async def _vouch_for(self, run: LiveRun) -> None:
        """Tells every process sharing the store that this run still runs, so that one
        whose process dies is seen ended (interrupted) within ``lease_s``."""
        while True:
            await anyio.sleep(self._lease_s / 3)
            try:
                await self._liveness.keep_alive(run.record.id, self._clock() + self._lease_s)
            except Exception:
                log.warning("response %s: could not renew its run", run.record.id, exc_info=True)

    async def _watch_for_cancel(self, run: LiveRun) -> None:
        """Cancels the run once another process asked for it (``request_cancel``), or
        ended it (this run stopped vouching for it long enough to be taken for dead)."""
        while True:
            await anyio.sleep(self._poll_s)
            current = await self._store.get(run.record.id)
            if current is None:
                continue
            if not current.running:
                run.ended_elsewhere = current
            if current.cancel_requested or not current.running:
                run.scope.cancel()
                return


def steps_of(record: ResponseRecord) -> tuple[ResponseStep, ...]:
    """The steps a finished response that kept none would have had: its text in one
    piece, its client calls, its end."""
    steps: list[ResponseStep] = []
    if record.output_text:
        steps.append(TextDelta(record.output_text))
    steps += [ClientCall(call) for call in record.calls]
    status = record.status if not record.running else "failed"
    steps.append(Ended(status, record.usage, record.error))
    return tuple(steps)


def _last_answer(last: TurnRecord | None) -> str | None:
    if last is None:
        return None
    for message in reversed(last.messages):
        if message.role == "assistant" and message.content:
            return message.content
    return None
