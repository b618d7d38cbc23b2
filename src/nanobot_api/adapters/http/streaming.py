"""Server-sent events for a streamed turn: deltas as the agent writes them, then the end."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import suppress
from typing import Final

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from nanobot_api.adapters.http.answers import chunk_json, usage_json
from nanobot_api.adapters.http.errors import failure_body
from nanobot_api.domain.conversation import Message, Usage
from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.turns import PreparedTurn, TurnResult

log = logging.getLogger(__name__)

KEEPALIVE: Final = b": keep-alive\n\n"
DONE: Final = b"data: [DONE]\n\n"


@attrs.frozen
class _Failed:
    body: dict[str, object]


_Event = str | TurnResult | _Failed


def sse(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class SilentReply:
    """A Reply that shows nothing as it is written: the HTTP side reads the turn's
    result (its text and usage), and history is the use case's business."""

    async def send(self, delta: str) -> None:
        pass

    def add_usage(self, usage: Usage) -> None:
        pass

    def remember(self, message: Message) -> None:
        pass


class _StreamReply(SilentReply):
    """A Reply that forwards each delta to the response as soon as it is written."""

    def __init__(self, events: MemoryObjectSendStream[_Event]) -> None:
        self._events = events

    async def send(self, delta: str) -> None:
        try:
            self._events.send_nowait(delta)
        except anyio.WouldBlock:
            await self._events.send(delta)  # the client reads slower than the model writes
        else:
            # Yield once the delta is queued, not before (as ``send`` does): the response
            # then writes it at once, rather than after whatever the turn does next
            # without waiting (the rest of a burst of chunks, its commit).
            await anyio.lowlevel.checkpoint()


class TurnRunner:
    """Runs streamed turns in the server's own task group, apart from the response.

    The response generator only reads events; when the client goes away it cancels the
    turn's scope, so the turn ends, commits nothing, and frees its session.
    """

    def __init__(self) -> None:
        self._group: TaskGroup | None = None

    def attach(self, group: TaskGroup | None) -> None:
        self._group = group

    def start(self, run: Callable[[], Coroutine[object, object, None]]) -> None:
        if self._group is None:
            raise RuntimeError("the app is not serving: use `async with app.test_app()`")
        self._group.start_soon(run)


async def stream_turn(
    runner: TurnRunner,
    turns: ChatTurns,
    turn: PreparedTurn,
    *,
    completion_id: str,
    created: int,
    include_usage: bool,
    keepalive_s: float,
) -> AsyncGenerator[bytes, None]:
    """The SSE body of a streamed turn, as SPEC.md lays it out."""
    send, receive = anyio.create_memory_object_stream[_Event](64)
    scope = anyio.CancelScope()

    async def drive() -> None:
        with scope, send:
            outcome: _Event
            try:
                outcome = await turns.run(turn, _StreamReply(send))
            except Exception as exc:
                if not isinstance(exc, NanobotError):
                    log.exception("streamed turn failed")
                outcome = _Failed(failure_body(exc)[1])
            with suppress(anyio.BrokenResourceError):
                await send.send(outcome)

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        return sse(chunk_json(completion_id, created, turns.model, delta, finish))

    runner.start(drive)
    wait_s = keepalive_s if keepalive_s > 0 else math.inf
    try:
        # One pass of the event loop lets the turn run up to its first wait, which
        # with a model is its call sent upstream, before anything is written.
        await anyio.lowlevel.checkpoint()
        yield chunk({"role": "assistant"})
        while True:
            with anyio.move_on_after(wait_s) as waited:
                event = await receive.receive()
            if waited.cancelled_caught:
                yield KEEPALIVE
            elif isinstance(event, str):
                yield chunk({"content": event})
            elif isinstance(event, _Failed):
                # No stop chunk and no [DONE]: a failure must never look like success.
                yield sse(event.body)
                return
            else:
                yield chunk({}, "stop")
                if include_usage:
                    usage = chunk_json(completion_id, created, turns.model, {})
                    usage["choices"] = []
                    usage["usage"] = usage_json(event.usage)
                    yield sse(usage)
                yield DONE
                return
    except anyio.EndOfStream:
        # The runner stopped without a result: the server is shutting down.
        yield sse(failure_body(RuntimeError("turn abandoned"))[1])
    finally:
        # Cancel before closing, so the turn ends as cancelled rather than failing a send.
        scope.cancel()
        receive.close()
