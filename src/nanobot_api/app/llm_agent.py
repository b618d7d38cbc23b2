"""The agent most users run: a chat model, the session's history, and a tool loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import attrs

from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.app.tools import ToolBox, ToolSource
from nanobot_api.domain.client import system_with_instructions
from nanobot_api.domain.conversation import Message
from nanobot_api.domain.models import (
    ContentPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPiece,
    ToolContext,
    UserContent,
)
from nanobot_api.domain.ports import ChatModel, Reply, StreamsToolCalls, Telemetry, Tool
from nanobot_api.domain.turns import Turn

log = logging.getLogger(__name__)

# Between the texts of two model calls of one turn, so they do not run together.
_CALL_SEPARATOR = "\n\n"


def iteration_limit_text(limit: int) -> str:
    """What the caller reads when the model still wants tools after ``limit`` rounds."""
    return (
        f"I stopped after {limit} rounds of tool calls without reaching a final answer. "
        "Please try again, or break the task into smaller steps."
    )


class LlmAgent:
    """Answers each turn with a chat model, offering it tools.

    One turn is: [system prompt] + the session's history + the new user message (its
    images as image parts, its documents as text parts headed by their names) sent to
    the model; each tool call in the answer is run and its result fed back; repeated
    until the model answers without tools, or ``max_tool_iterations`` rounds of tool
    calls have run, which ends the turn with ``iteration_limit_text``.

    Text is streamed to the reply as the model produces it; every message of the turn
    after the user's (tool calls, tool results, the answer) is given to
    ``reply.remember``, and each model call's usage to ``reply.add_usage``. The agent
    keeps no state between turns: history lives in the session store.

    ``tool_sources`` add tools that come and go (those of MCP servers); a turn uses the
    tools offered when it starts. A tool's images reach the model within the turn only.
    """

    def __init__(
        self,
        model: ChatModel,
        model_id: str,
        tools: Sequence[Tool] = (),
        system_prompt: str | None = None,
        max_tool_iterations: int = 8,
        *,
        telemetry: Telemetry = NO_TELEMETRY,
        max_reply_chars: int | None = None,
        tool_sources: Sequence[ToolSource] = (),
    ) -> None:
        if max_tool_iterations < 0:
            raise ValueError("max_tool_iterations must be 0 or more")
        self._model = model
        self._model_id = model_id
        self._tools = ToolBox(tools, tool_sources)
        # One message for the agent's life, so the wire encodes it once like history.
        self._system = Message("system", system_prompt) if system_prompt else None
        self._max_tool_iterations = max_tool_iterations
        self._telemetry = telemetry
        self._max_reply_chars = max_reply_chars

    @property
    def model(self) -> str:
        return self._model_id

    @property
    def server_tools(self) -> frozenset[str]:
        """The names of the tools the agent runs itself (a client tool may not reuse one)."""
        return frozenset(spec.name for spec in self._tools.current().specs)

    def _system_for(self, instructions: str | None) -> Message | None:
        """The turn's system message: the agent's own, with the client's instructions."""
        if not instructions:
            return self._system
        own = self._system.content if self._system else None
        return Message("system", system_with_instructions(own, instructions))

    async def respond(self, turn: Turn, reply: Reply) -> None:
        # This turn's messages; the system prompt and history go beside them. A paused
        # turn going on starts from what it held, the client's tool results last.
        messages: list[ModelMessage] = list(turn.resumed) or [
            UserContent.of_turn(turn.text, turn.images, turn.documents)
        ]
        context = ToolContext(turn.session, reply)
        options = turn.options
        system = self._system_for(options.instructions)
        client_names = frozenset(spec.name for spec in options.tools)
        # One set of tools for the whole turn, though MCP servers may come and go.
        tools = self._tools.current()
        # With no rounds allowed the model is not told about tools at all.
        specs = tools.specs if self._max_tool_iterations else ()
        specs += options.tools
        response_format = options.response_format.wire if options.response_format else None
        sent_any = False
        rounds = 0
        while True:
            first_delta = True

            async def on_delta(text: str) -> None:
                nonlocal first_delta, sent_any
                if first_delta and sent_any:
                    text = _CALL_SEPARATOR + text
                first_delta = False
                sent_any = True
                await reply.send(text)

            request = ModelRequest(
                tuple(messages),
                specs,
                turn.stream,
                history=turn.history,
                system=system,
                max_reply_chars=self._max_reply_chars,
                response_format=response_format,
                tool_choice=options.tool_choice,
                parallel_tool_calls=options.parallel_tool_calls,
            )
            response = await self._call_model(
                request, on_delta, rounds + 1, ClientCallRelay.to(reply, client_names)
            )
            reply.add_usage(response.usage)
            answer = response.message
            if not answer.tool_calls:
                if answer.content:
                    reply.remember(answer)
                # An empty answer is left out: the chat use case records the text the
                # caller was actually sent (its fallback) in its place.
                return
            reply.remember(answer)
            messages.append(answer)
            images: list[ContentPart] = []
            for call in answer.tool_calls:
                if call.name in client_names:
                    continue  # the client runs it: the turn pauses below
                started = time.monotonic()
                with self._telemetry.span(f"tool {call.name}"):
                    output = await tools.run(call, context)
                log.debug(
                    "tool %s [%s]: %.0f ms, %d chars of result",
                    call.name,
                    call.id,
                    (time.monotonic() - started) * 1000,
                    len(output.text),
                )
                result = Message.tool_result(call.id, output.text)
                reply.remember(result)
                messages.append(result)
                if output.images:
                    images += [TextPart(f"Images returned by {call.name} ({call.id}):")]
                    images += output.images
            if any(call.name in client_names for call in answer.tool_calls):
                # The client's calls are the answer for now; the turn goes on when the
                # client sends their results (see the chat use case).
                return
            if images:
                # Providers take images in user messages only, after all the results of
                # the round. History keeps the results' text, which names the images.
                messages.append(UserContent(tuple(images)))
            rounds += 1
            if rounds >= self._max_tool_iterations:
                text = iteration_limit_text(rounds)
                await reply.send(_CALL_SEPARATOR + text if sent_any else text)
                reply.remember(Message.assistant(text))
                return

    async def complete(self, messages: Sequence[Message], reply: Reply) -> None:
        """One plain model call on exactly ``messages``: no system prompt, no history, no
        tools (for a front end's auxiliary requests: titles, tags, follow-ups)."""
        request = ModelRequest(tuple(messages), max_reply_chars=self._max_reply_chars)
        response = await self._call_model(request, reply.send, 1)
        reply.add_usage(response.usage)

    async def _call_model(
        self,
        request: ModelRequest,
        on_delta: Callable[[str], Awaitable[None]],
        number: int,
        on_call: ClientCallRelay | None = None,
    ) -> ModelResponse:
        """One model call, timed: a debug line (``-v``) and the model-call metrics."""
        started = time.monotonic()
        try:
            with self._telemetry.span("model call"):
                response = await self._model.complete(request, on_delta, on_call)
        except BaseException as exc:
            status = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else "error"
            self._observe_call(number, status, started, type(exc).__name__)
            raise
        usage = response.usage
        self._observe_call(
            number,
            "ok",
            started,
            f"{usage.prompt_tokens}+{usage.completion_tokens} tokens, "
            f"{len(response.message.tool_calls)} tool call(s)",
        )
        return response

    def _observe_call(self, number: int, status: str, started: float, detail: str) -> None:
        seconds = time.monotonic() - started
        self._telemetry.model_called(status, seconds)
        log.debug(
            "model call %d to %s: %s in %.0f ms (%s)",
            number,
            self._model_id,
            status,
            seconds * 1000,
            detail,
        )


class ClientCallRelay:
    """Hands on, as the model streams them, the pieces of one model call's tool calls
    that the client runs, numbered among the client's calls alone; the server's own
    calls run here and never show as calls, whole or in pieces."""

    def __init__(self, reply: StreamsToolCalls, client_names: frozenset[str]) -> None:
        self._reply = reply
        self._client_names = client_names
        self._indices: dict[int, int] = {}  # the model's index -> the client's

    @classmethod
    def to(cls, reply: Reply, client_names: frozenset[str]) -> ClientCallRelay | None:
        """A relay for one model call, if the reply shows calls and the client has tools."""
        if client_names and isinstance(reply, StreamsToolCalls):
            return cls(reply, client_names)
        return None

    async def __call__(self, piece: ToolCallPiece) -> None:
        if piece.starts_call:
            if piece.name not in self._client_names:
                return
            self._indices[piece.index] = len(self._indices)
        index = self._indices.get(piece.index)
        if index is not None:
            await self._reply.send_call(attrs.evolve(piece, index=index))
