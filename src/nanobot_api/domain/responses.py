"""Responses: one turn of a session as the Responses API sees it, and its stream steps.

A response is a turn with an identity that outlives the request: its record (status,
output, usage, error) can be read later, and a background response's steps (text
deltas, tool progress, client tool calls and their pieces, the end) are kept in
order so that a stream can be picked up again after any step. The wire form of those
steps (named events with sequence numbers) is the HTTP adapter's business; it expands
the same steps into the same events every time, so a replay numbers them as the live stream did.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.errors import ConversationConflict, InvalidRequest, NotFound
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import ChatRequest

ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
RESPONSE_STATUSES: Final[tuple[ResponseStatus, ...]] = (
    "queued",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "incomplete",
)
RUNNING: Final = frozenset({"queued", "in_progress"})
ToolStatus = Literal["started", "done", "failed"]
TOOL_STATUSES: Final[tuple[ToolStatus, ...]] = ("started", "done", "failed")
RESPONSE_ID_PREFIX: Final = "resp_"


@attrs.frozen
class ResponseError:
    """Why a response failed or was cancelled: an error type and a message for the client."""

    code: str
    message: str


@attrs.frozen
class TextDelta:
    """A piece of the answer's text, in the order it was written."""

    text: str


@attrs.frozen
class ToolProgress:
    """A server-side tool step: started, then done or failed, with a short summary.

    Shown only to streams that asked for tool events; the summary is already redacted.
    """

    call_id: str
    name: str
    status: ToolStatus
    summary: str = ""


@attrs.frozen
class ClientCall:
    """A call of one of the client's own tools: the turn pauses for its result."""

    call: ToolCall


@attrs.frozen
class CallPiece:
    """A piece of a client call as the model writes it (see ``ToolCallPiece``): shown
    at once, while the record waits for the whole call (its ``ClientCall``), which
    comes when the turn ends and may hold a tail of arguments no piece carried."""

    piece: ToolCallPiece


@attrs.frozen
class Ended:
    """The last step of every response: how it ended, with its usage and any error."""

    status: ResponseStatus
    usage: Usage = attrs.field(factory=Usage)
    error: ResponseError | None = None


ResponseStep = TextDelta | ToolProgress | CallPiece | ClientCall | Ended


@attrs.frozen
class ResponseRecord:
    """What is kept of a response.

    ``session`` is the conversation it belongs to; ``named`` says whether the client
    named that conversation (then the response reports it). ``input`` holds the turn's
    input as messages (instructions as ``system``, client tool results as ``tool``).
    ``turn_no`` is the session's count of turns once this response's turn was committed
    (None until then): a response is the session's latest while its turn is.
    ``alive_until`` is the time (``time.time()``) until which the process running a
    background response vouches for it; it renews this while the turn runs, so a
    response still running past it lost its process (see ``lost_its_run``).
    """

    id: str
    session: SessionKey
    model: str
    created_at: float
    status: ResponseStatus = "in_progress"
    background: bool = False
    named: bool = False
    previous_response_id: str | None = None
    instructions: str | None = None
    input: tuple[Message, ...] = ()
    output_text: str = ""
    calls: tuple[ToolCall, ...] = ()
    usage: Usage = attrs.field(factory=Usage)
    error: ResponseError | None = None
    turn_no: int | None = None
    cancel_requested: bool = False
    alive_until: float | None = None

    @property
    def running(self) -> bool:
        return self.status in RUNNING


def lost_its_run(record: ResponseRecord, now: float) -> bool:
    """Whether a response still shown running lost the process that ran it: nothing
    vouched for it since ``alive_until`` (a response nobody vouches for never expires)."""
    return record.running and record.alive_until is not None and record.alive_until < now


def forgettable(record: ResponseRecord, made_before: float) -> bool:
    """Whether a sweep of records made before ``made_before`` may delete ``record``:
    made before then, and not a run still vouched for since (one begun before the
    cut-off but still running keeps its record until it ends)."""
    if record.created_at >= made_before:
        return False
    return not record.running or record.alive_until is None or record.alive_until < made_before


def apply_step(record: ResponseRecord, step: ResponseStep) -> ResponseRecord:
    """The record after one more step: text added, a client call added, or its end."""
    match step:
        case TextDelta(text=text):
            return attrs.evolve(record, output_text=record.output_text + text)
        case ClientCall(call=call):
            return attrs.evolve(record, calls=(*record.calls, call))
        case Ended(status=status, usage=usage, error=error):
            return attrs.evolve(record, status=status, usage=usage, error=error)
    return record


def ended(record: ResponseRecord, step: Ended, turn_no: int | None = None) -> ResponseRecord:
    """The record of a response that ended with ``step``, its turn numbered ``turn_no``."""
    return attrs.evolve(apply_step(record, step), turn_no=turn_no)


def is_latest_turn(record: ResponseRecord, session_turns: int, last_answer: str | None) -> bool:
    """Whether ``record``'s turn is its session's latest, the session now having
    ``session_turns`` turns whose latest answered ``last_answer``."""
    return (
        record.turn_no is not None
        and record.turn_no == session_turns
        and (last_answer is None or last_answer == record.output_text or bool(record.calls))
    )


def check_continuation(
    previous: ResponseRecord,
    named: SessionKey | None,
    session_turns: int,
    last_answer: str | None,
    latest: str | None = None,
) -> SessionKey:
    """The session a ``previous_response_id`` continues, or the error refusing it.

    ``named`` is the conversation the request also named (if any): a different one is
    an InvalidRequest. ``session_turns`` and ``last_answer`` describe the session now
    (its count of turns and the latest turn's last assistant text): the previous
    response must be that latest turn, else ConversationConflict, naming ``latest``
    (the id of the response that is the latest turn; None when no response is, as
    after a chat-completions turn).
    """
    if named is not None and named != previous.session:
        raise InvalidRequest(
            "previous_response_id belongs to another conversation than the one named",
            "previous_response_id",
        )
    if previous.running:
        raise ConversationConflict(
            f"Response '{previous.id}' has not finished yet", "previous_response_id"
        )
    if not is_latest_turn(previous, session_turns, last_answer):
        conversation = previous.session.session_id
        if latest is not None and latest != previous.id:
            how = f"its latest response is '{latest}': continue from that one"
        else:
            how = "its latest turn is not a response: continue it"
        raise ConversationConflict(
            f"Response '{previous.id}' is not the latest of its conversation, which went "
            f"on since; {how}, or name the conversation '{conversation}'",
            "previous_response_id",
        )
    return previous.session


def check_response_id(value: object, param: str = "response_id") -> str:
    """A response id as given (``resp_`` and 1-200 printable characters); else NotFound.

    An id of the wrong shape can name no response, so it is answered as unknown.
    """
    if (
        not isinstance(value, str)
        or not value.startswith(RESPONSE_ID_PREFIX)
        or not 0 < len(value) <= 200
        or not value.isprintable()
    ):
        raise NotFound(f"No response found with id {str(value)[:200]!r}", param)
    return value


@attrs.frozen
class ResponseRequest:
    """A ``POST /v1/responses`` already checked for shape.

    ``chat`` is the turn as chat completions would run it (its session is decided
    by the use case: ``named``, the previous response's, or a new one). ``input`` is
    what ``input_items`` will show.
    """

    chat: ChatRequest
    named: SessionKey | None = None
    previous_response_id: str | None = None
    instructions: str | None = None
    input: tuple[Message, ...] = ()
    background: bool = False
    store: bool = True
    stream: bool = False
    tool_events: bool = False


SUMMARY_MAX_CHARS: Final = 120
_FAILED_PREFIX: Final = "Error:"


def tool_progress(message: Message, names: dict[str, str]) -> tuple[ToolProgress, ...]:
    """The tool steps a message of a running turn shows: an assistant message's calls
    start (their names are noted in ``names``), a tool result ends its call, failed if
    it reports an error. Summaries are cut to a short line; the caller redacts them."""
    if message.role == "assistant":
        for call in message.tool_calls:
            names[call.id] = call.name
        return tuple(
            ToolProgress(c.id, c.name, "started", _summary(c.arguments)) for c in message.tool_calls
        )
    if message.role == "tool" and message.tool_call_id is not None:
        text = message.content or ""
        status: ToolStatus = "failed" if text.startswith(_FAILED_PREFIX) else "done"
        name = names.get(message.tool_call_id, "")
        return (ToolProgress(message.tool_call_id, name, status, _summary(text)),)
    return ()


def _summary(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_MAX_CHARS else line[: SUMMARY_MAX_CHARS - 1] + "…"
