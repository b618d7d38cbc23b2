"""The Responses and Conversations wire formats going out: objects, items and events.

A response's stream is an expansion of its steps: the same steps always give the
same events with the same sequence numbers, so a stream resumed with
``starting_after=N`` carries on exactly where the first one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import attrs

from nanobot_api.adapters.http.answers import json_bytes
from nanobot_api.adapters.http.errors import failure_body
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.conversations import ConversationItem, ConversationRecord
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.responses import (
    CallPiece,
    ClientCall,
    Ended,
    ResponseError,
    ResponseRecord,
    ResponseStep,
    TextDelta,
    ToolProgress,
)

Json = dict[str, Any]
TOOL_EVENT_PREFIX: Final = "nanobot.tool."


def usage_json(usage: Usage) -> Json:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def message_id(response_id: str) -> str:
    return "msg_" + response_id.removeprefix("resp_")


def text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(response_id: str, text: str, status: str = "completed") -> Json:
    content = [text_part(text)] if status == "completed" or text else []
    return {
        "type": "message",
        "id": message_id(response_id),
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _call_item_id(call_id: str) -> str:
    """The id of the output item of the client call ``call_id`` (its events name it)."""
    return "fc_" + call_id


def call_item(call: ToolCall, status: str = "completed") -> Json:
    return {
        "type": "function_call",
        "id": _call_item_id(call.id),
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments if status == "completed" else "",
        "status": status,
    }


def error_json(error: ResponseError | None) -> Json | None:
    return None if error is None else {"code": error.code, "message": error.message}


def response_json(record: ResponseRecord) -> Json:
    """The response object as OpenAI documents it (fields it has no use for at their
    neutral values, so typed clients parse it)."""
    output: list[Json] = []
    if record.output_text:
        status = "completed" if record.status == "completed" else "incomplete"
        output.append(message_item(record.id, record.output_text, status))
    output += [call_item(call) for call in record.calls]
    finished = not record.running
    return {
        "id": record.id,
        "object": "response",
        "created_at": int(record.created_at),
        "status": record.status,
        "background": record.background,
        "model": record.model,
        "output": output,
        "output_text": record.output_text,
        "usage": usage_json(record.usage) if finished else None,
        "previous_response_id": record.previous_response_id,
        "conversation": {"id": record.session.session_id} if record.named else None,
        "error": error_json(record.error),
        "incomplete_details": None,
        "instructions": record.instructions,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": None,
        "top_p": None,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
    }


def response_events(
    first: ResponseRecord, steps: Iterable[ResponseStep], *, tool_events: bool
) -> Iterator[Json]:
    """The named events of a response's stream, numbered from 0, for its steps so far.

    ``first`` is the record as created; the events carry snapshots of it as the steps
    change it. Tool progress is shown only with ``tool_events`` (then it is numbered
    too: a stream resumed with the same choice numbers its events the same way).
    """
    expander = EventStream(first, tool_events=tool_events)
    yield from expander.start()
    for step in steps:
        yield from expander.step(step)


class EventStream:
    """Expands a response's steps into its events, one step at a time."""

    def __init__(self, first: ResponseRecord, *, tool_events: bool) -> None:
        # The record as it was created, whatever it is now: a stream resumed after a
        # background response left "queued" numbers its events as its first stream did.
        self._record = attrs.evolve(
            first,
            status="queued" if first.background else "in_progress",
            output_text="",
            calls=(),
            usage=Usage(),
            error=None,
        )
        self._tool_events = tool_events
        self._seq = 0
        self._text_open = False
        self._outputs = 0
        # The client's calls shown in pieces and not finished yet, by call id (the
        # fragments sent so far in ``arguments``); and which call each piece index is.
        self._open_calls: dict[str, tuple[int, ToolCall]] = {}
        self._call_at: dict[int, str] = {}

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> Iterator[Json]:
        snapshot = response_json(self._record)
        yield self._event("response.created", response=snapshot)
        if self._record.status == "queued":
            yield self._event("response.queued", response=snapshot)
            snapshot = {**snapshot, "status": "in_progress"}
        yield self._event("response.in_progress", response=snapshot)

    def step(self, step: ResponseStep) -> Iterator[Json]:
        record = self._record
        match step:
            case TextDelta(text=text):
                item_id = message_id(record.id)
                if not self._text_open:
                    self._text_open = True
                    yield self._event(
                        "response.output_item.added",
                        output_index=self._outputs,
                        item=message_item(record.id, "", "in_progress"),
                    )
                    yield self._event(
                        "response.content_part.added",
                        item_id=item_id,
                        output_index=self._outputs,
                        content_index=0,
                        part=text_part(""),
                    )
                self._record = attrs.evolve(record, output_text=record.output_text + text)
                yield self._event(
                    "response.output_text.delta",
                    item_id=item_id,
                    output_index=self._outputs,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            case ToolProgress():
                if self._tool_events:
                    yield self._event(
                        TOOL_EVENT_PREFIX + step.status,
                        id=step.call_id,
                        name=step.name,
                        status=step.status,
                        summary=step.summary,
                    )
            case CallPiece(piece=piece):
                yield from self._piece(piece)
            case ClientCall(call=call):
                yield from self._finish_call(call)
                self._record = attrs.evolve(record, calls=(*record.calls, call))
            case Ended(status=status, usage=usage, error=error):
                final = attrs.evolve(record, status=status, usage=usage, error=error)
                if status == "completed":
                    yield from self._close_text()
                    yield from self._close_unfinished_calls()
                    yield self._event("response.completed", response=response_json(final))
                elif status == "incomplete":
                    yield self._event("response.incomplete", response=response_json(final))
                else:
                    # Failed or cancelled: never a completed item, never response.completed.
                    yield self._event("response.failed", response=response_json(final))

    def _piece(self, piece: ToolCallPiece) -> Iterator[Json]:
        """A call's first piece opens its item, as OpenAI streams one; each later piece
        is a fragment of its arguments."""
        if piece.starts_call:
            yield from self._close_text()
            index = self._outputs
            self._outputs += 1
            opened = ToolCall(piece.id, piece.name, "")
            self._open_calls[piece.id] = (index, opened)
            self._call_at[piece.index] = piece.id
            item = call_item(opened, "in_progress")
            yield self._event("response.output_item.added", output_index=index, item=item)
        call_id = self._call_at.get(piece.index)
        if call_id is None or call_id not in self._open_calls or not piece.arguments:
            return  # a piece of no call that started, or nothing to add
        index, shown = self._open_calls[call_id]
        arguments = shown.arguments + piece.arguments
        self._open_calls[call_id] = (index, attrs.evolve(shown, arguments=arguments))
        yield self._arguments_delta(call_id, index, piece.arguments)

    def _finish_call(self, call: ToolCall) -> Iterator[Json]:
        """The whole call: what its pieces did not carry, then its end. A call that was
        never shown in pieces is shown whole, in one fragment."""
        if call.id in self._open_calls:
            index, shown = self._open_calls.pop(call.id)
            so_far = shown.arguments
        else:
            yield from self._close_text()
            index, so_far = self._outputs, ""
            self._outputs += 1
            item = call_item(call, "in_progress")
            yield self._event("response.output_item.added", output_index=index, item=item)
        if call.arguments.startswith(so_far) and len(call.arguments) > len(so_far):
            yield self._arguments_delta(call.id, index, call.arguments[len(so_far) :])
        yield self._event(
            "response.function_call_arguments.done",
            item_id=_call_item_id(call.id),
            output_index=index,
            name=call.name,
            arguments=call.arguments,
        )
        yield self._event("response.output_item.done", output_index=index, item=call_item(call))

    def _arguments_delta(self, call_id: str, index: int, fragment: str) -> Json:
        return self._event(
            "response.function_call_arguments.delta",
            item_id=_call_item_id(call_id),
            output_index=index,
            delta=fragment,
        )

    def _close_unfinished_calls(self) -> Iterator[Json]:
        """Calls shown in part that the turn did not end with (its reply was cut at its
        bound mid-call): their items end incomplete; the client has nothing to run."""
        for index, shown in sorted(self._open_calls.values(), key=lambda open_call: open_call[0]):
            item = {**call_item(shown), "status": "incomplete"}
            yield self._event("response.output_item.done", output_index=index, item=item)
        self._open_calls.clear()

    def _close_text(self) -> Iterator[Json]:
        if not self._text_open:
            return
        self._text_open = False
        record = self._record
        item_id = message_id(record.id)
        index = self._outputs
        text = record.output_text
        yield self._event(
            "response.output_text.done",
            item_id=item_id,
            output_index=index,
            content_index=0,
            text=text,
            logprobs=[],
        )
        yield self._event(
            "response.content_part.done",
            item_id=item_id,
            output_index=index,
            content_index=0,
            part=text_part(text),
        )
        yield self._event(
            "response.output_item.done", output_index=index, item=message_item(record.id, text)
        )
        self._outputs += 1


def sse_event(event: Json) -> bytes:
    """One named server-sent event."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + json_bytes(event) + b"\n\n"


def input_item(response_id: str, index: int, message: Message) -> Json:
    """One input item of a response as ``input_items`` lists it."""
    item_id = f"in_{response_id.removeprefix('resp_')}_{index}"
    if message.role == "tool":
        return {
            "type": "function_call_output",
            "id": item_id,
            "call_id": message.tool_call_id,
            "output": message.content or "",
            "status": "completed",
        }
    if message.tool_calls:
        return {**call_item(message.tool_calls[0]), "id": item_id}
    kind = "output_text" if message.role == "assistant" else "input_text"
    return {
        "type": "message",
        "id": item_id,
        "role": message.role,
        "status": "completed",
        "content": [{"type": kind, "text": message.content or ""}],
    }


def conversation_json(record: ConversationRecord) -> Json:
    return {
        "id": record.session.session_id,
        "object": "conversation",
        "created_at": int(record.created_at),
        "metadata": dict(record.metadata),
    }


def item_json(item: ConversationItem) -> Json:
    if item.kind == "function_call":
        return {
            "type": "function_call",
            "id": item.id,
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
            "status": "completed",
        }
    if item.kind == "function_call_output":
        return {
            "type": "function_call_output",
            "id": item.id,
            "call_id": item.call_id,
            "output": item.text,
            "status": "completed",
        }
    kind = "output_text" if item.role == "assistant" else "input_text"
    part: Json = {"type": kind, "text": item.text}
    if kind == "output_text":
        part["annotations"] = []
    return {
        "type": "message",
        "id": item.id,
        "role": item.role,
        "status": "completed",
        "content": [part],
    }


def page_json(data: list[Json], has_more: bool) -> Json:
    """A cursor page as OpenAI lists items: ``first_id``/``last_id`` for the next call."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def response_error(error: BaseException) -> ResponseError:
    """How a failed turn's error reads in its response: the error type of the JSON body
    the same failure gets in chat completions, and its message."""
    _, body = failure_body(error)
    detail = body["error"]
    assert isinstance(detail, dict)
    return ResponseError(str(detail["type"]), str(detail["message"]))
