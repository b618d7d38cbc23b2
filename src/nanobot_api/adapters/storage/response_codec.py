"""How response records and their steps are written as JSON text, for every backend.

One codec for SQLite and PostgreSQL alike, so a response stored by one process is
read the same by any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nanobot_api.adapters.storage.turn_json import message_from_json, message_json
from nanobot_api.domain.conversation import ToolCall, Usage
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.responses import (
    RESPONSE_STATUSES,
    TOOL_STATUSES,
    CallPiece,
    ClientCall,
    Ended,
    ResponseError,
    ResponseRecord,
    ResponseStatus,
    ResponseStep,
    TextDelta,
    ToolProgress,
    ToolStatus,
)
from nanobot_api.domain.sessions import SessionKey

_STATUSES: dict[object, ResponseStatus] = {s: s for s in RESPONSE_STATUSES}
_TOOL_STATUSES: dict[object, ToolStatus] = {s: s for s in TOOL_STATUSES}


def record_json(record: ResponseRecord) -> str:
    """The parts of a record that are not columns of their own, as JSON text."""
    return json.dumps(
        {
            "model": record.model,
            "background": record.background,
            "named": record.named,
            "previous_response_id": record.previous_response_id,
            "instructions": record.instructions,
            "input": [message_json(m) for m in record.input],
            "output_text": record.output_text,
            "calls": [[c.id, c.name, c.arguments] for c in record.calls],
            "usage": [record.usage.prompt_tokens, record.usage.completion_tokens],
            "error": _error_json(record.error),
            "turn_no": record.turn_no,
        },
        ensure_ascii=False,
    )


def record_from_row(row: Sequence[Any]) -> ResponseRecord:
    """A record from its columns: id, session key, created at, status, cancel flag,
    body, alive until."""
    response_id, session_key, created_at, status, cancel_requested, body, alive_until = row
    data = json.loads(body)
    return ResponseRecord(
        id=response_id,
        session=SessionKey.parse(session_key),
        model=str(data["model"]),
        created_at=float(created_at),
        status=_STATUSES[status],
        background=bool(data["background"]),
        named=bool(data["named"]),
        previous_response_id=data["previous_response_id"],
        instructions=data["instructions"],
        input=tuple(message_from_json(m) for m in data["input"]),
        output_text=str(data["output_text"]),
        calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in data["calls"]),
        usage=Usage(int(data["usage"][0]), int(data["usage"][1])),
        error=_error(data["error"]),
        turn_no=data["turn_no"],
        cancel_requested=bool(cancel_requested),
        alive_until=None if alive_until is None else float(alive_until),
    )


def step_json(step: ResponseStep) -> str:
    """One step as JSON text: a list whose first element names its kind."""
    payload: list[Any]
    match step:
        case TextDelta(text=text):
            payload = ["text", text]
        case ToolProgress(call_id=call_id, name=name, status=status, summary=summary):
            payload = ["tool", call_id, name, status, summary]
        case CallPiece(piece=piece):
            payload = ["piece", piece.index, piece.id, piece.name, piece.arguments]
        case ClientCall(call=call):
            payload = ["call", call.id, call.name, call.arguments]
        case Ended(status=status, usage=usage, error=error):
            payload = ["end", status, usage.prompt_tokens, usage.completion_tokens]
            payload.append(_error_json(error))
    return json.dumps(payload, ensure_ascii=False)


def step_from_json(text: str) -> ResponseStep:
    payload = json.loads(text)
    kind = payload[0]
    if kind == "text":
        return TextDelta(str(payload[1]))
    if kind == "tool":
        return ToolProgress(
            str(payload[1]), str(payload[2]), _TOOL_STATUSES[payload[3]], str(payload[4])
        )
    if kind == "call":
        return ClientCall(ToolCall(str(payload[1]), str(payload[2]), str(payload[3])))
    if kind == "piece":
        index, call_id, name, arguments = payload[1:]
        return CallPiece(ToolCallPiece(int(index), str(call_id), str(name), str(arguments)))
    if kind == "end":
        usage = Usage(int(payload[2]), int(payload[3]))
        return Ended(_STATUSES[payload[1]], usage, _error(payload[4]))
    raise ValueError(f"stored response step of unknown kind {kind!r}")


def _error_json(error: ResponseError | None) -> list[str] | None:
    return None if error is None else [error.code, error.message]


def _error(value: object) -> ResponseError | None:
    if not isinstance(value, list):
        return None
    return ResponseError(str(value[0]), str(value[1]))
