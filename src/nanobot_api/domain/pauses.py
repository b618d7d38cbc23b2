"""Turns paused on the client's tool calls, and how they go on or close.

When the model calls a tool the client offered, the turn stops with those calls as its
answer and is stored like that, ``paused_at`` set. The client's next request carries
the results; they are checked against the calls still waiting and added, and the turn
goes on. A new user message instead, or nobody answering within the timeout, closes
the pause: each missing result becomes :data:`NOT_RETURNED`, so history never holds a
tool call without its result (which every model provider refuses).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.errors import InvalidRequest

NOT_RETURNED = "not returned by the client"


def pending_calls(messages: Sequence[Message]) -> tuple[ToolCall, ...]:
    """The calls of the last assistant message that has tool calls which no tool
    message after it answers, in their order."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "assistant" and message.tool_calls:
            answered = {m.tool_call_id for m in messages[index + 1 :] if m.role == "tool"}
            return tuple(call for call in message.tool_calls if call.id not in answered)
    return ()


def is_paused(record: TurnRecord | None) -> bool:
    """Whether a stored turn waits for the client's tool results."""
    return record is not None and record.paused_at is not None


def expired(record: TurnRecord, now: float, timeout_s: float) -> bool:
    """Whether a paused turn has waited longer than ``timeout_s``."""
    return record.paused_at is not None and now - record.paused_at > timeout_s


def check_results(record: TurnRecord | None, results: Sequence[Message]) -> None:
    """Refuses results that answer no call the turn waits for, naming the first."""
    waiting: set[str] = set()
    if record is not None and record.paused_at is not None:
        waiting = {call.id for call in pending_calls(record.messages)}
    for result in results:
        if result.tool_call_id not in waiting:
            why = (
                "no tool call of this session awaits a result"
                if not waiting
                else "it is not one of the calls awaiting a result: " + ", ".join(sorted(waiting))
            )
            raise InvalidRequest(f"Unknown tool_call_id '{result.tool_call_id}': {why}", "messages")


def check_not_late(record: TurnRecord, results: Sequence[Message]) -> None:
    """Refuses results for the calls of a pause that has expired, saying so (``record``
    is that pause): its turn no longer waits, and the client should know why."""
    late = {call.id for call in pending_calls(record.messages)} if record.paused_at else set()
    for result in results:
        if result.tool_call_id in late:
            raise InvalidRequest(
                f"tool_call_id '{result.tool_call_id}' has expired: its result came after "
                "api.toolResultTimeoutS, so the turn stopped waiting and answers it as "
                "'not returned by the client'; send a new user message instead",
                "messages",
            )


def check_resent(record: TurnRecord | None, call_ids: Sequence[str], param: str) -> None:
    """Refuses a resent assistant message (``param``) whose tool calls are not the
    calls of the paused turn it claims to be; nothing to check when nothing waits (the
    results are refused then) or when the resend carries no call ids."""
    if record is None or record.paused_at is None:
        return
    made = [call.id for m in record.messages if m.role == "assistant" for call in m.tool_calls]
    strangers = [call_id for call_id in call_ids if call_id not in made]
    if strangers:
        raise InvalidRequest(
            f"{param} resends a tool call '{strangers[0]}' that the paused turn of this "
            f"session did not make (it made: {', '.join(made)}): resend that turn as it "
            "was, or send only the tool messages",
            param,
        )


def with_results(record: TurnRecord, results: Sequence[Message]) -> TurnRecord:
    """The paused turn with the client's results added, in the order of its calls; a
    call the client left out gets :data:`NOT_RETURNED`. No longer paused."""
    check_results(record, results)
    given = {result.tool_call_id: result for result in results}
    added = tuple(
        given.get(call.id) or Message.tool_result(call.id, NOT_RETURNED)
        for call in pending_calls(record.messages)
    )
    return attrs.evolve(record, messages=record.messages + added, paused_at=None)


def closed(record: TurnRecord) -> TurnRecord:
    """A paused turn closed without results (a new message came, or it expired)."""
    return with_results(record, ())
