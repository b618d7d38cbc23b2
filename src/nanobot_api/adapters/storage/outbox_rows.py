"""An outbox event as a row of the ``outbox`` table (SQLite and PostgreSQL alike).

The record of an event's attempts is one JSON list in its row (``attempt_log``), written
in the same statement as the state it goes with: bounded (domain.delivery_attempts), and
never read apart from its event. A row written before the column existed reads as ``[]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from nanobot_api.domain.delivery_attempts import ATTEMPT_OUTCOMES, DeliveryAttempt
from nanobot_api.domain.outbox import OUTBOX_STATUSES, OutboxEvent, OutboxStatus, OutboxTally

COLUMNS = (
    "id, channel, chat_id, content, media, status, created_at, attempts, progress, "
    "next_attempt_at, last_error, delivered_at, retried_from, attempt_log"
)
# The column as the migrations add it to a table written by an earlier version.
ATTEMPT_LOG_COLUMN = "attempt_log TEXT NOT NULL DEFAULT '[]'"
_OUTCOMES = {outcome: outcome for outcome in ATTEMPT_OUTCOMES}
_STATUSES: dict[object, OutboxStatus] = {status: status for status in OUTBOX_STATUSES}


# The files of the events still to go out (queued or pending): what the uploads bound
# must keep. Delivered and failed events are done with theirs.
AWAITED_MEDIA = "SELECT media FROM outbox WHERE status IN ('queued', 'pending') AND media <> '[]'"


def media_names(rows: Sequence[Sequence[Any]]) -> frozenset[str]:
    """The last path parts of the files the ``AWAITED_MEDIA`` rows name."""
    return frozenset(PurePath(path).name for (media,) in rows for path in json.loads(media))


def claim_until(event: OutboxEvent, claim_s: float) -> float | None:
    """How long a newly stored event stays claimed by the process that stored it.

    A pending event stored with its first attempt already counted is being delivered
    by the process that stored it (the ``message`` tool sends at once): no other
    worker may take it until that attempt has had its time."""
    if event.status == "pending" and event.attempts > 0:
        return event.created_at + claim_s
    return None


def event_row(event: OutboxEvent) -> tuple[object, ...]:
    """The values of :data:`COLUMNS`: what the event is, then its state (as
    :func:`state_row` has it, without the id at its end)."""
    media = json.dumps(list(event.media), ensure_ascii=False)
    what = (event.id, event.channel, event.chat_id, event.content, media)
    return (*what, event.status, event.created_at, *state_row(event)[1:-1])


def insert_sql(param: str) -> str:
    """The INSERT of :func:`event_row` and then the end of the event's claim, with
    ``param`` (``?`` for SQLite, ``%s`` for PostgreSQL) for each value."""
    values = ", ".join([param] * (len(COLUMNS.split(",")) + 1))
    return f"INSERT INTO outbox ({COLUMNS}, claimed_until) VALUES ({values})"


def update_state_sql(param: str) -> str:
    """The UPDATE of :func:`state_row` (the id last), which also ends the event's claim,
    with ``param`` for each value."""
    sets = ", ".join(f"{name} = {param}" for name in STATE_COLUMNS)
    return f"UPDATE outbox SET {sets}, claimed_until = NULL WHERE id = {param}"


def log_json(log: tuple[DeliveryAttempt, ...]) -> str:
    """The record of attempts as stored: a JSON list, oldest first."""
    return json.dumps(
        [
            {
                "n": a.number,
                "at": a.started_at,
                "by": a.worker,
                "outcome": a.outcome,
                "ended": a.ended_at,
                "error": a.error,
            }
            for a in log
        ],
        ensure_ascii=False,
    )


def json_log(text: str) -> tuple[DeliveryAttempt, ...]:
    """The record of attempts from its stored JSON (ValueError if it is not one)."""
    attempts = []
    for item in json.loads(text):
        outcome = _OUTCOMES.get(item["outcome"])
        if outcome is None:
            raise ValueError(f"stored outbox attempt has an unknown outcome {item['outcome']!r}")
        by, ended, error = item.get("by"), item.get("ended"), item.get("error")
        attempts.append(
            DeliveryAttempt(
                int(item["n"]),
                float(item["at"]),
                None if by is None else str(by),
                outcome,
                None if ended is None else float(ended),
                None if error is None else str(error),
            )
        )
    return tuple(attempts)


# The columns a delivery attempt changes, in the order of the UPDATE's SET list,
# then the id for its WHERE.
STATE_COLUMNS = (
    "status",
    "attempts",
    "progress",
    "next_attempt_at",
    "last_error",
    "delivered_at",
    "retried_from",
    "attempt_log",
)


def state_row(event: OutboxEvent) -> tuple[object, ...]:
    """The values of :data:`STATE_COLUMNS` and then the event's id."""
    return (
        event.status,
        event.attempts,
        event.progress,
        event.next_attempt_at,
        event.last_error,
        event.delivered_at,
        event.retried_from,
        log_json(event.attempt_log),
        event.id,
    )


# The counts come from the (status, next_attempt_at) index alone; the oldest reads the
# rows still to go, once per metrics scrape.
TALLY_COUNTS = "SELECT status, COUNT(*) FROM outbox GROUP BY status"
TALLY_OLDEST = "SELECT MIN(created_at) FROM outbox WHERE status IN ('queued', 'pending')"


def tally_of(counts: Sequence[Sequence[Any]], oldest: float | None) -> OutboxTally:
    """The tally from the rows of :data:`TALLY_COUNTS` and the value of :data:`TALLY_OLDEST`."""
    by_status = dict.fromkeys(OUTBOX_STATUSES, 0)
    for status, count in counts:
        known = _STATUSES.get(status)
        if known is None:
            raise ValueError(f"stored outbox events have an unknown status {status!r}")
        by_status[known] = int(count)
    return OutboxTally(
        queued=by_status["queued"],
        pending=by_status["pending"],
        failed=by_status["failed"],
        delivered=by_status["delivered"],
        oldest_waiting_at=None if oldest is None else float(oldest),
    )


def row_event(row: Sequence[Any]) -> OutboxEvent:
    ident, channel, chat_id, content, media, status, created, attempts, progress = row[:9]
    next_at, error, delivered_at, retried_from, log = row[9:14]
    known = _STATUSES.get(status)
    if known is None:
        raise ValueError(f"stored outbox event has an unknown status {status!r}")
    return OutboxEvent(
        str(ident),
        str(channel),
        str(chat_id),
        str(content),
        tuple(str(path) for path in json.loads(media)),
        known,
        float(created),
        int(attempts),
        int(progress),
        None if next_at is None else float(next_at),
        None if error is None else str(error),
        None if delivered_at is None else float(delivered_at),
        int(retried_from),
        json_log(str(log)),
    )
