"""A committed turn as the JSON text every store keeps in one row (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from nanobot_api.domain.branches import MessageIds
from nanobot_api.domain.conversation import Message, Role, ToolCall, TurnRecord

_ROLES: dict[object, Role] = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


def encode_turn(record: TurnRecord) -> str:
    """The turn's messages as one JSON array (tool calls as ``[id, name, arguments]``),
    or for a turn paused on the client's tool calls ``{"messages": [...], "paused_at":
    t}`` (so rows of earlier versions read the same)."""
    messages = [message_json(m) for m in record.messages]
    if record.paused_at is None:
        return json.dumps(messages, ensure_ascii=False)
    return json.dumps({"messages": messages, "paused_at": record.paused_at}, ensure_ascii=False)


def decode_turn(payload: str) -> TurnRecord:
    """The turn :func:`encode_turn` wrote; ValueError for a row no version wrote."""
    data = json.loads(payload)
    paused_at = None
    if isinstance(data, dict):
        stamp = data.get("paused_at")
        paused_at = float(stamp) if isinstance(stamp, int | float) else None
        data = data.get("messages", [])
    return TurnRecord(tuple(message_from_json(item) for item in data), paused_at=paused_at)


def message_json(message: Message) -> dict[str, object]:
    """A message as stored (the response store keeps messages the same way)."""
    item: dict[str, object] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = [[c.id, c.name, c.arguments] for c in message.tool_calls]
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    return item


def message_from_json(item: dict[str, object]) -> Message:
    """A stored message read back; ValueError for a role no message has."""
    role = _ROLES.get(item.get("role"))
    if role is None:
        raise ValueError(f"stored message has an unknown role {item.get('role')!r}")
    content = item.get("content")
    call_id = item.get("tool_call_id")
    calls = item.get("tool_calls")
    return Message(
        role,
        content if isinstance(content, str) else None,
        tuple(ToolCall(str(c[0]), str(c[1]), str(c[2])) for c in calls)
        if isinstance(calls, list)
        else (),
        call_id if isinstance(call_id, str) else None,
    )


def ids_json(ids: MessageIds) -> str | None:
    """A turn's front-end message ids as stored (None when it has none)."""
    return json.dumps([ids.user, ids.answer, ids.parent]) if ids.any else None


def ids_from_json(text: str | None) -> MessageIds:
    """The ids :func:`ids_json` wrote."""
    if text is None:
        return MessageIds()
    user, answer, parent = json.loads(text)
    return MessageIds(user, answer, parent)
