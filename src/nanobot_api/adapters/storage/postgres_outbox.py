"""The durable outbox in PostgreSQL, claimed by any number of delivery workers at once.

A claim takes due events with ``FOR UPDATE SKIP LOCKED`` and marks them claimed for
``claim_s`` seconds in the same transaction, so two workers (in one process or on two
machines) never take the same event while its claim lasts: each event is delivered once
in normal operation. A worker that dies mid-delivery leaves its claim to expire, after
which another takes the event again: at least once across crashes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from nanobot_api.adapters.storage.outbox_rows import (
    AWAITED_MEDIA,
    TALLY_COUNTS,
    TALLY_OLDEST,
    claim_until,
    event_row,
    insert_sql,
    log_json,
    media_names,
    row_event,
    state_row,
    tally_of,
    update_state_sql,
)
from nanobot_api.adapters.storage.outbox_rows import COLUMNS as _COLUMNS
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.outbox import (
    Claim,
    OutboxEvent,
    OutboxStatus,
    OutboxTally,
    claimed,
    retried,
)

# When a pending event may next be taken: when it falls due, or its claim runs out.
# GREATEST skips NULLs: an event never claimed is ready when due.
_READY_AT = "GREATEST(COALESCE(next_attempt_at, %(now)s), claimed_until)"
DEFAULT_CLAIM_S = 600.0

_INSERT = insert_sql("%s")
_UPDATE_STATE = update_state_sql("%s")


class PostgresOutbox:
    """An Outbox and OutboxAdmin in a PostgreSQL database.

    ``claim_s`` bounds one delivery attempt: a claim older than that is taken to be
    abandoned by a crashed worker and the event is offered again.
    """

    def __init__(self, db: PostgresDatabase, *, claim_s: float = DEFAULT_CLAIM_S) -> None:
        self._db = db
        self._claim_s = claim_s

    # --- Outbox ------------------------------------------------------------------------

    async def enqueue(self, event: OutboxEvent) -> None:
        """Inserts the event; durable on return. An id already stored is an error."""
        import psycopg.errors

        async with self._db.connection() as conn:
            try:
                await conn.execute(_INSERT, (*event_row(event), claim_until(event, self._claim_s)))
            except psycopg.errors.UniqueViolation as exc:
                raise ValueError(f"outbox event {event.id!r} exists") from exc

    async def claim_due(
        self, now: float, limit: int, exclude: Collection[str] = (), *, worker: str | None = None
    ) -> Claim:
        """Due pending events nobody holds, oldest due first, each with one more attempt
        counted and on record, and claimed for ``claim_s``."""
        skip = list(exclude)
        args: dict[str, object] = {"now": now, "exclude": skip, "limit": limit}
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' "
                f"AND {_READY_AT} <= %(now)s AND NOT (id = ANY(%(exclude)s)) "
                "ORDER BY next_attempt_at NULLS FIRST, seq LIMIT %(limit)s "
                "FOR UPDATE SKIP LOCKED",
                args,
            )
            rows = await cursor.fetchall()
            taken = [claimed(row_event(row), now, worker) for row in rows]
            if taken:
                async with conn.cursor() as writer:
                    await writer.executemany(
                        "UPDATE outbox SET attempts = %s, attempt_log = %s, claimed_until = %s "
                        "WHERE id = %s",
                        [
                            (e.attempts, log_json(e.attempt_log), now + self._claim_s, e.id)
                            for e in taken
                        ],
                    )
            taken_ids = [e.id for e in taken]
            cursor = await conn.execute(
                f"SELECT MIN({_READY_AT}) FROM outbox WHERE status = 'pending' "
                "AND NOT (id = ANY(%(skip)s))",
                {**args, "skip": [*skip, *taken_ids]},
            )
            row = await cursor.fetchone()
        next_due = None if row is None or row[0] is None else float(row[0])
        return Claim(tuple(taken), next_due)

    async def settle(self, event: OutboxEvent) -> bool:
        """Writes the event's state and ends its claim; False if its row is gone."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(_UPDATE_STATE, state_row(event))
            return cursor.rowcount > 0

    async def extend_claims(self, event_ids: Collection[str], now: float) -> None:
        """Claims of events still being delivered, kept for ``claim_s`` from ``now``."""
        if not event_ids:
            return
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE outbox SET claimed_until = %s WHERE id = ANY(%s) AND status = 'pending'",
                (now + self._claim_s, list(event_ids)),
            )

    # --- AwaitedFiles ------------------------------------------------------------------

    async def awaited_files(self) -> frozenset[str]:
        """The names of the files that queued and pending events will send."""
        async with self._db.connection() as conn:
            rows = await (await conn.execute(AWAITED_MEDIA)).fetchall()
        return media_names(rows)

    # --- OutboxAdmin -------------------------------------------------------------------

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        """Every event, or those with ``status``, oldest first."""
        where, args = ("WHERE status = %s", (status,)) if status is not None else ("", ())
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY created_at, seq", args
            )
            rows = await cursor.fetchall()
        return tuple(row_event(row) for row in rows)

    async def event(self, event_id: str) -> OutboxEvent:
        """The event with ``event_id``; NotFound for an unknown id."""
        async with self._db.connection() as conn:
            return await _get(conn, event_id, lock=False)

    async def tally(self) -> OutboxTally:
        """Events per status and the oldest waiting one's creation time, from the index."""
        async with self._db.connection() as conn:
            counts = await (await conn.execute(TALLY_COUNTS)).fetchall()
            oldest = await (await conn.execute(TALLY_OLDEST)).fetchone()
        return tally_of(counts, None if oldest is None else oldest[0])

    async def retry(self, event_id: str, now: float, *, force: bool = False) -> OutboxEvent:
        """The event made pending and due now; NotFound for an unknown id,
        InvalidRequest for a delivered one unless ``force``."""
        async with self._db.transaction() as conn:
            # Locked: no claim slips in before the update.
            event, until = await _read(conn, event_id)
            event = retried(event, now, force=force, claimed_until=until)
            # The whole state, the record of attempts as it was read under the lock.
            await conn.execute(_UPDATE_STATE, state_row(event))
        return event

    async def drop(self, event_id: str) -> OutboxEvent:
        """Deletes the event, returning it; NotFound for an unknown id."""
        async with self._db.transaction() as conn:
            event = await _get(conn, event_id)
            await conn.execute("DELETE FROM outbox WHERE id = %s", (event_id,))
        return event


async def _get(conn: Any, event_id: str, *, lock: bool = True) -> OutboxEvent:
    return (await _read(conn, event_id, lock=lock))[0]


async def _read(conn: Any, event_id: str, *, lock: bool = True) -> tuple[OutboxEvent, float | None]:
    """The event and when its claim ends (None: not claimed)."""
    cursor = await conn.execute(
        f"SELECT {_COLUMNS}, claimed_until FROM outbox "
        f"WHERE id = %s{' FOR UPDATE' if lock else ''}",
        (event_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"No outbox event with id {event_id!r}", param="id")
    return row_event(row), None if row[-1] is None else float(row[-1])
