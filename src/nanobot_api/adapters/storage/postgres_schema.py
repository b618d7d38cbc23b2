"""The PostgreSQL schema, as an append-only list of named migrations.

To add a table (a new durable record), append a :class:`Migration` with a new name at
the end of :data:`MIGRATIONS`; never edit or reorder one that has shipped. Names, not
numbers, identify migrations, so two features added at once never claim the same
number. A database holding a migration this code does not know was written by a newer
nanobot-api and is refused rather than misread.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Migration:
    """One step of the schema: applied once, in its own transaction, in list order."""

    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001-sessions",
        """
        CREATE TABLE turns (
            session_key TEXT NOT NULL,
            turn_no     INTEGER NOT NULL,
            n_messages  INTEGER NOT NULL,
            messages    TEXT NOT NULL,
            created_at  DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (session_key, turn_no)
        );
        -- Leases: one row per session that ever ran a turn; the token only grows.
        CREATE TABLE session_leases (
            session_key TEXT PRIMARY KEY,
            token       BIGINT NOT NULL,
            holder      BIGINT,
            expires_at  TIMESTAMPTZ NOT NULL
        );
        -- Places in each session's queue, in arrival order (the ticket).
        CREATE TABLE session_queue (
            ticket      BIGSERIAL PRIMARY KEY,
            session_key TEXT NOT NULL,
            expires_at  TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX session_queue_by_key ON session_queue (session_key, ticket);
        """,
    ),
    Migration(
        "0002-outbox",
        """
        CREATE TABLE outbox (
            seq             BIGSERIAL UNIQUE,
            id              TEXT PRIMARY KEY,
            channel         TEXT NOT NULL,
            chat_id         TEXT NOT NULL,
            content         TEXT NOT NULL,
            media           TEXT NOT NULL,
            status          TEXT NOT NULL,
            created_at      DOUBLE PRECISION NOT NULL,
            attempts        INTEGER NOT NULL,
            progress        INTEGER NOT NULL,
            next_attempt_at DOUBLE PRECISION,
            last_error      TEXT,
            delivered_at    DOUBLE PRECISION,
            retried_from    INTEGER NOT NULL DEFAULT 0,
            claimed_until   DOUBLE PRECISION
        );
        CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
        """,
    ),
    Migration(
        "0003-media",
        """
        CREATE TABLE media (
            name          TEXT PRIMARY KEY,
            original_name TEXT,
            mime          TEXT NOT NULL,
            size          BIGINT NOT NULL,
            data          BYTEA NOT NULL,
            created_at    DOUBLE PRECISION NOT NULL
        );
        """,
    ),
)
