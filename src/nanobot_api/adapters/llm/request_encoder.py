"""Chat-completion request bodies, with the session's history encoded once.

A turn resends its session's recent history (up to ``maxHistoryMessages`` messages,
200 by default), so encoding it message by message on every turn was the largest cost
of a turn after the network. It barely changes from one turn to the next: the last
turn's window plus the turn just committed, less the oldest turns that fell out of the
bound. The encoder keeps, per session, the text of the last window it sent, and builds
the next from it: a slice, a comma and the one new turn. Each turn is encoded once,
when it is new; a window that matches nothing kept (a regenerated turn, a restart, a
session not seen lately) is encoded whole.

Windows are found by identity: the store hands out the same ``TurnRecord`` objects
turn after turn (the contract of ``SessionStore.history``, tested on every store), and
a window holds the turns it describes, so a reused ``id`` cannot fool it. An agent
offers the same system message and tuple of tool specs every time, so each is kept in
one slot the same way.
"""

from __future__ import annotations

import json

import attrs

from nanobot_api.adapters.llm.openai_wire import message_json, tools_json
from nanobot_api.domain.conversation import History, Message, TurnRecord
from nanobot_api.domain.models import ModelMessage, ModelRequest, ToolSpec


def encode_message(message: ModelMessage) -> str:
    return json.dumps(message_json(message), separators=(",", ":"), ensure_ascii=False)


@attrs.define
class _Window:
    """The encoded messages of one history: ``text`` is its turns' texts joined by
    commas, and ``lengths`` the length of each turn's text, so that the oldest can be
    cut off the front."""

    history: History
    text: str
    lengths: list[int]


class RequestEncoder:
    """Encodes the JSON bodies of chat-completion calls (see the module's docstring).

    ``max_windows`` bounds the histories remembered (one per session that had a turn
    lately); past it they are all dropped and rebuilt as sessions come back, which is
    simpler than an LRU and costs one full encoding per session.
    """

    def __init__(self, max_windows: int = 256) -> None:
        self._max_windows = max_windows
        # Keyed by the id of the window's newest turn, which the next window's
        # second-newest turn is.
        self._windows: dict[int, _Window] = {}
        self._model = ("", "")
        self._system: tuple[Message | None, str] = (None, "")
        self._tools: tuple[tuple[ToolSpec, ...], str] = ((), "")

    def encode(self, model: str, request: ModelRequest, *, stream: bool) -> bytes:
        """The JSON body of one call: the model, the messages, the tools, stream options."""
        texts: list[str] = []
        if request.system is not None:
            texts.append(self._system_text(request.system))
        if request.history:
            texts.append(self._history_text(request.history))
        texts += [encode_message(message) for message in request.messages]
        if self._model[0] != model:
            self._model = (model, json.dumps({"model": model})[1:-1])
        parts = [self._model[1], f'"messages":[{_joined(texts)}]']
        if request.tools:
            parts.append(self._tools_text(request.tools))
        # The client's asks, passed on as they came (rare, so not cached).
        asks: dict[str, object] = {}
        if request.response_format is not None:
            asks["response_format"] = request.response_format
        if request.tool_choice is not None and request.tools:
            asks["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None and request.tools:
            asks["parallel_tool_calls"] = request.parallel_tool_calls
        if asks:
            parts.append(json.dumps(asks, separators=(",", ":"), ensure_ascii=False)[1:-1])
        if stream:
            # Without stream_options most providers send no usage at all on a stream.
            parts.append('"stream":true,"stream_options":{"include_usage":true}')
        return ("{" + ",".join(parts) + "}").encode()

    def _history_text(self, history: History) -> str:
        window = self._windows.get(id(history[-1]))
        if window is not None and window.history is history:
            return window.text  # the same history again: a later call of the same turn
        window = self._extended(history)
        if window is None:
            texts = [_turn_text(turn) for turn in history]
            window = _Window(history, _joined(texts), [len(text) for text in texts])
        if len(self._windows) >= self._max_windows:
            self._windows.clear()
        self._windows[id(history[-1])] = window
        return window.text

    def _extended(self, history: History) -> _Window | None:
        """``history``'s window from the kept one it extends by its newest turn, or None
        if no kept window ends with its second-newest turn (or the rest differs)."""
        if len(history) < 2:
            return None
        before = self._windows.get(id(history[-2]))
        if before is None:
            return None
        kept = len(history) - 1
        dropped = len(before.history) - kept
        # Compares by identity first, in C: cheap for the same turn objects.
        if dropped < 0 or before.history[dropped:] != history[:-1]:
            return None
        # The session moved on: its previous window will not be asked for again.
        del self._windows[id(history[-2])]
        cut = sum(length + 1 for length in before.lengths[:dropped] if length)
        newest = _turn_text(history[-1])
        return _Window(
            history,
            _joined([before.text[cut:], newest]),
            [*before.lengths[dropped:], len(newest)],
        )

    def _system_text(self, system: Message) -> str:
        if self._system[0] is not system:
            self._system = (system, encode_message(system))
        return self._system[1]

    def _tools_text(self, tools: tuple[ToolSpec, ...]) -> str:
        if self._tools[0] is not tools:
            text = json.dumps({"tools": tools_json(tools)}, separators=(",", ":"))[1:-1]
            self._tools = (tools, text)
        return self._tools[1]


def _turn_text(turn: TurnRecord) -> str:
    return _joined([encode_message(message) for message in turn.messages])


def _joined(texts: list[str]) -> str:
    """Encoded messages (or runs of them) as one run; an empty run (a turn without
    messages, which a file could hold) adds no comma, so cuts count only non-empty
    ones."""
    return ",".join([text for text in texts if text])
