"""Server-sent events for a streamed turn: deltas as the agent writes them, then the end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio
import anyio.lowlevel

from nanobot_api.adapters.http.answers import chunk_json, json_bytes, tool_calls_json, usage_json
from nanobot_api.adapters.http.errors import failure_body
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.responses import ToolProgress, tool_progress
from nanobot_api.domain.turns import PreparedTurn

KEEPALIVE: Final = b": keep-alive\n\n"
TOOL_EVENT: Final = b"event: nanobot.tool\ndata: "
_MAX_UNTURNED = 2  # asyncio warns from the 5th failed write to a lost connection
DONE: Final = b"data: [DONE]\n\n"


def sse(payload: dict[str, object]) -> bytes:
    return b"data: " + json_bytes(payload) + b"\n\n"


def tool_event(step: ToolProgress) -> bytes:
    """A ``nanobot.tool`` event of a chat stream (only for streams that asked)."""
    body = {"id": step.call_id, "name": step.name, "status": step.status, "summary": step.summary}
    return TOOL_EVENT + json_bytes(body) + b"\n\n"


_MARK = "nanobot-delta-mark"


class ContentEvents:
    """A stream's content events, each the same bytes ``sse(chunk_json(...))`` gives.

    Every delta of a stream shares all but its text, so the rest is rendered once, and
    a delta costs the encoding of its text alone (it is paid once per token of every
    stream in flight).
    """

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._ids = (completion_id, created, model)
        whole = sse(chunk_json(completion_id, created, model, {"content": _MARK}))
        head, mark, tail = whole.partition(json_bytes(_MARK))
        # A model name holding the mark itself would make the split ambiguous.
        self._parts = (head, tail) if mark and whole.count(_MARK.encode()) == 1 else None

    def content(self, text: str) -> bytes:
        if self._parts is None:
            return sse(chunk_json(*self._ids, {"content": text}))
        return self._parts[0] + json_bytes(text) + self._parts[1]

    def call_piece(self, piece: ToolCallPiece) -> bytes:
        """A ``delta.tool_calls`` event: a call's start (its id, type and name), or a
        fragment of its arguments."""
        call: dict[str, object] = {"index": piece.index}
        if piece.starts_call:
            call["id"] = piece.id
            call["type"] = "function"
            call["function"] = {"name": piece.name, "arguments": piece.arguments}
        else:
            call["function"] = {"arguments": piece.arguments}
        return sse(chunk_json(*self._ids, {"tool_calls": [call]}))


class SilentReply:
    """A Reply that shows nothing as it is written: the HTTP side reads the turn's
    result (its text and usage), and history is the use case's business."""

    async def send(self, delta: str) -> None:
        pass

    def add_usage(self, usage: Usage) -> None:
        pass

    def remember(self, message: Message) -> None:
        pass


class EventWriter:
    """Writes a stream's events one at a time, and a ``: keep-alive`` comment whenever
    none was written for ``every_s`` (0: never).

    The turn writes its own events from its own task. A timer looks at the stream
    every ``every_s`` and, only if it has been silent that long, starts a task to write
    the comment; a lock keeps that write from interleaving with the turn's.
    """

    def __init__(
        self, write: Callable[[bytes], Awaitable[None]], every_s: float, *, first: bytes = b""
    ) -> None:
        self._write = write
        # ``first`` goes out in front of the first write: one send on the socket fewer
        # (each send can wake the client, and with a thousand streams in flight those
        # wake-ups preempted the server: bench/inflight.py).
        self._held = first
        self._every_s = every_s
        self._lock = anyio.Lock(fast_acquire=True)
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._comment: asyncio.Task[None] | None = None
        if every_s > 0:
            self._timer = self._loop.call_later(every_s, self._check)

    async def write(self, data: bytes) -> None:
        async with self._lock:
            self._last = self._loop.time()
            if self._held:
                data, self._held = self._held + data, b""
            await self._write(data)

    def _check(self) -> None:
        silent = self._loop.time() - self._last
        if silent >= self._every_s:
            # One comment at a time: a client too slow to take one needs no more.
            if self._comment is None or self._comment.done():
                self._comment = self._loop.create_task(self.write(KEEPALIVE))
            silent = 0.0  # look again a whole period from now
        self._timer = self._loop.call_later(self._every_s - silent, self._check)

    def stop(self) -> None:
        """No more comments: the stream is over (one waiting to be written is dropped)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._comment is not None:
            self._comment.cancel()


class _StreamReply(SilentReply):
    """A Reply that writes each delta to the response as soon as it is written, and,
    with ``tool_events``, each of the agent's tool steps as it starts and ends."""

    def __init__(
        self,
        stream: EventWriter,
        events: ContentEvents,
        tool_events: bool,
        client_tools: frozenset[str] = frozenset(),
    ) -> None:
        self._stream = stream
        self._events = events
        self._tool_events = tool_events
        self._client_tools = client_tools
        self._names: dict[str, str] = {}
        # The client's calls streamed in pieces: id -> (index, arguments sent so far).
        self._calls: dict[str, tuple[int, list[str]]] = {}
        self._call_ids: dict[int, str] = {}
        self._pending: list[bytes] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._turned = True
        self._unturned = 0  # deltas written since the event loop last turned

    def _turn(self) -> None:
        self._turned = True

    def remember(self, message: Message) -> None:
        if not self._tool_events:
            return
        # The client's own tools show as tool_calls chunks, not as the agent's steps.
        steps = [s for s in tool_progress(message, self._names) if s.name not in self._client_tools]
        if steps:
            # remember() cannot wait for a write: a task writes them now (a tool may
            # run for long, which is when a client wants to see that it started).
            self._pending += [tool_event(step) for step in steps]
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Writes the tool events not written yet, in order."""
        while self._pending:
            await self._stream.write(self._pending.pop(0))

    def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()

    async def send_call(self, piece: ToolCallPiece) -> None:
        if self._pending:
            await self.flush()
        if piece.starts_call:
            self._calls[piece.id] = (piece.index, [piece.arguments])
            self._call_ids[piece.index] = piece.id
        elif piece.index in self._call_ids:
            self._calls[self._call_ids[piece.index]][1].append(piece.arguments)
        else:
            return  # a piece of no call that started: nothing to add it to
        await self._stream.write(self._events.call_piece(piece))

    @property
    def streamed_calls(self) -> bool:
        """Whether any call of the client's went out in pieces."""
        return bool(self._calls)

    def rest_of_calls(self, calls: Sequence[ToolCall]) -> list[object]:
        """The deltas that complete the client's ``calls`` after the pieces already
        sent: a streamed call's arguments not sent yet, and each call not streamed."""
        deltas: list[object] = []
        taken = {index for index, _ in self._calls.values()}
        for call in calls:
            streamed = self._calls.get(call.id)
            if streamed is None:
                index = next(i for i in range(len(taken) + 1) if i not in taken)
                taken.add(index)
                deltas += tool_calls_json([call], first_index=index)
                continue
            index, sent = streamed
            so_far = "".join(sent)
            if len(call.arguments) > len(so_far) and call.arguments.startswith(so_far):
                rest = call.arguments[len(so_far) :]
                deltas.append({"index": index, "function": {"arguments": rest}})
        return deltas

    async def send(self, delta: str) -> None:
        if self._pending:
            await self.flush()  # a step the agent took before this text comes first
        await self._stream.write(self._events.content(delta))
        # The event loop must turn every other delta at least: if the client has gone,
        # the server notices then and the turn is cancelled, rather than writing a burst
        # of deltas into a closed connection (asyncio warns from the fifth failed write;
        # tests/adapters/test_chat_endpoint.py cuts 60 streams short). A delta that came
        # after a wait (a model's next chunk) had that turn already: a callback
        # scheduled after each delta has run if the loop turned. Only the second delta
        # in a row without a turn yields here. (Yielding after every delta cost a task
        # step per token, paid by every stream in flight: bench/inflight.py.)
        if self._turned:
            self._unturned = 0
        self._unturned += 1
        if self._unturned >= _MAX_UNTURNED:
            await anyio.lowlevel.checkpoint()
            self._unturned = 0
        self._turned = False
        self._loop.call_soon(self._turn)


async def stream_turn(
    write: Callable[[bytes], Awaitable[None]],
    turns: ChatTurns,
    turn: PreparedTurn,
    *,
    completion_id: str,
    created: int,
    include_usage: bool,
    keepalive_s: float,
    tool_events: bool = False,
) -> None:
    """Runs a streamed turn, writing its SSE events as SPEC.md lays them out.

    The turn runs in the caller's task and writes each delta itself, so a delta leaves
    as soon as the model's chunk is read; if the client goes away, whoever watches for
    that cancels this task, and with it the turn (which then commits nothing).
    """

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return sse(chunk_json(completion_id, created, turns.model, delta, finish))

    # The role's chunk leaves with the first text, call or end (or a keep-alive comment,
    # if the model is slow to start), as OpenAI's own first chunk does.
    stream = EventWriter(write, keepalive_s, first=chunk({"role": "assistant"}))
    client_tools = frozenset(tool.name for tool in turn.options.tools)
    events = ContentEvents(completion_id, created, turns.model)
    reply = _StreamReply(stream, events, tool_events, client_tools)
    try:
        try:
            result = await turns.run(turn, reply)
            await reply.flush()
        except Exception as exc:
            # No stop chunk and no [DONE]: a failure must never look like success.
            await stream.write(sse(failure_body(exc)[1]))
            return
        # The client's calls went out piece by piece as the model wrote them (as OpenAI
        # streams them); what the model did not stream is sent now, whole.
        # The events that end the stream are ready at once: one write (each write is a
        # send on the socket, paid by every stream in flight).
        tail: list[bytes] = []
        rest = reply.rest_of_calls(result.tool_calls)
        if rest:
            tail.append(chunk({"tool_calls": rest}))
        finish = result.finish_reason
        if reply.streamed_calls and not result.tool_calls:
            # Calls began but the turn has none: the answer was cut at the reply bound
            # mid-call, so what was shown is unfinished (OpenAI's "length").
            finish = "length"
        tail.append(chunk({}, finish))
        if include_usage:
            usage = chunk_json(completion_id, created, turns.model, {})
            usage["choices"] = []
            usage["usage"] = usage_json(result.usage)
            tail.append(sse(usage))
        tail.append(DONE)
        await stream.write(b"".join(tail))
    finally:
        reply.stop()
        stream.stop()
