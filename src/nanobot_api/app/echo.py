"""The built-in offline agent: answers with what it was sent, so nothing needs a network."""

from __future__ import annotations

import json
from collections.abc import Sequence

from nanobot_api.domain.conversation import History, Message, Usage
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.schema_instance import minimal_instance
from nanobot_api.domain.sessions import API_CHANNEL, SessionKey
from nanobot_api.domain.text import shorten
from nanobot_api.domain.turns import Turn

ECHO_MODEL = "nanobot-echo"
_RECALLED_TURNS = 3
_RECALLED_CHARS = 40


class EchoAgent:
    """Streams ``echo: <text>`` word by word, then a note per attachment it received, then
    (from the second turn of a session on) what it remembers of the session:
    ``(turn 3; earlier: "hi", "how are you")``, so the server's memory shows offline.

    Asked for structured output, it answers in the shape asked for, so the offline
    server shows it: a ``json_schema`` request gets the smallest instance of its schema,
    a ``json_object`` request ``{"echo": "<text>"}``.
    """

    def __init__(self, model: str = ECHO_MODEL) -> None:
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def respond(self, turn: Turn, reply: Reply) -> None:
        shape = turn.options.response_format
        if shape is not None:
            document = (
                minimal_instance(shape.schema) if shape.schema is not None else {"echo": turn.text}
            )
            await reply.send(json.dumps(document, ensure_ascii=False))
            reply.add_usage(Usage(prompt_tokens=len(turn.text.split()), completion_tokens=1))
            return
        notes = [f"[{image.mime} {len(image.data)} B]" for image in turn.images]
        notes += [f"[{doc.name}: {len(doc.text)} chars]" for doc in turn.documents]
        words = ["echo:", *turn.text.split(), *notes]
        recalled = recollection(turn.history)
        for index, word in enumerate(words):
            await reply.send(word if index == 0 else f" {word}")
        if recalled:
            await reply.send(f" {recalled}")
        reply.add_usage(
            Usage(
                prompt_tokens=len(turn.text.split()),
                completion_tokens=len(words) + len(recalled.split()),
            )
        )

    async def complete(self, messages: Sequence[Message], reply: Reply) -> None:
        """Echoes the last user message of an auxiliary request."""
        text = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
        await self.respond(Turn(SessionKey(API_CHANNEL, "auxiliary"), text), reply)


def recollection(history: History) -> str:
    """``(turn N; earlier: "a", "b")`` naming the last few user messages of ``history``;
    empty for a session's first turn."""
    if not history:
        return ""
    earlier = ", ".join(
        json.dumps(shorten(" ".join(record.user_text.split()), _RECALLED_CHARS), ensure_ascii=False)
        for record in history[-_RECALLED_TURNS:]
    )
    more = "..., " if len(history) > _RECALLED_TURNS else ""
    return f"(turn {len(history) + 1}; earlier: {more}{earlier})"
