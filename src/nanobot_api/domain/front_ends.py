"""What chat front ends mean by their requests (see docs/how-to/front-ends.md).

Open WebUI sends, besides each chat turn, background "task" requests (a title, tags,
follow-up suggestions, search queries) under the same chat id. They must be answered
without touching the chat's history. The recipe's ``X-OpenWebUI-Task: {{TASK}}``
connection header names them; without it they are recognised by the shape Open WebUI
0.12.4 gives every one of them (tests/fixtures holds a real recording).
"""

from __future__ import annotations

from typing import Final

import attrs

# Open WebUI names a temporary chat (one it keeps nowhere) ``temporary:<socket id>``.
TEMPORARY_CHAT: Final = "temporary:"
TASK_MARK: Final = "### Task:"
# Every task template of Open WebUI quotes the conversation in this block; the one
# chat-turn template that also starts with TASK_MARK (answering from uploaded files'
# text) holds a <context> block instead.
HISTORY_OPEN: Final = "<chat_history>"
HISTORY_CLOSE: Final = "</chat_history>"
GENERIC_TASK: Final = "task"
# The first line of each known template, and the name Open WebUI's {{TASK}} gives it.
_TASK_NAMES: Final = (
    ("Generate a concise", "title_generation"),
    ("Generate 1-3 broad tags", "tags_generation"),
    ("Suggest 3-5 relevant follow-up", "follow_up_generation"),
    ("Predict 3-5 useful messages", "follow_up_generation"),
    ("Analyze the chat history to determine the necessity", "query_generation"),
    ("Generate a detailed prompt", "image_prompt_generation"),
)


@attrs.frozen
class PlainShape:
    """The parts of a chat request that tell an auxiliary task from a chat turn.

    ``messages`` holds each message's role and text (its text parts joined).
    ``from_open_webui`` is True when the request carries Open WebUI's forwarded
    headers (chat id or user info).
    """

    messages: tuple[tuple[str, str], ...]
    stream: bool = False
    has_tools: bool = False
    from_open_webui: bool = False


def auxiliary_task(task_header: str | None, shape: PlainShape) -> str | None:
    """The task a request asks for, or None when it is a chat turn.

    A non-empty task header decides (an empty one is what Open WebUI's ``{{TASK}}``
    becomes on a chat turn). Without one, only a request from Open WebUI that has a task
    request's shape is a task: one user message built from a ``### Task:`` template
    that quotes the chat in a ``<chat_history>`` block, not streamed, offering no tools.
    Open WebUI streams every chat turn and offers its built-in tools on it, so no chat
    turn of its own has that shape.
    """
    if task_header is not None:
        name = task_header.strip()
        return name or None
    if not shape.from_open_webui or shape.stream or shape.has_tools:
        return None
    if len(shape.messages) != 1:
        return None
    role, text = shape.messages[0]
    if role != "user" or not _is_task_template(text):
        return None
    return task_name(text)


def _is_task_template(text: str) -> bool:
    body = text.lstrip()
    if not body.startswith(TASK_MARK):
        return False
    opened = body.find(HISTORY_OPEN)
    return opened >= 0 and body.find(HISTORY_CLOSE, opened) > opened


def task_name(text: str) -> str:
    """Open WebUI's name for a task template's text (``task`` if not a known one)."""
    first = text.lstrip().removeprefix(TASK_MARK).lstrip().split("\n", 1)[0]
    for prefix, name in _TASK_NAMES:
        if first.startswith(prefix):
            return name
    return GENERIC_TASK
