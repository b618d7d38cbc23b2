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


# Decides whether the turn holding ``p_ticket`` may take its session now (see
# postgres_leases): the new fencing token; NULL to keep waiting; -1 if the place itself
# expired (its process stalled past the lease).
_TAKE_TURN_FUNCTION = """
CREATE FUNCTION nanobot_take_turn(p_key TEXT, p_ticket BIGINT, p_lease_s DOUBLE PRECISION)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v_now TIMESTAMPTZ := clock_timestamp();
    v_until TIMESTAMPTZ := clock_timestamp() + make_interval(secs => p_lease_s);
    v_first BIGINT;
    v_token BIGINT;
    v_holder BIGINT;
    v_expires TIMESTAMPTZ;
BEGIN
    -- One decision at a time per session (the lock ends with the transaction).
    PERFORM pg_advisory_xact_lock(hashtext(p_key));
    DELETE FROM session_queue WHERE session_key = p_key AND expires_at < v_now;
    UPDATE session_queue SET expires_at = v_until WHERE ticket = p_ticket;
    IF NOT FOUND THEN
        RETURN -1;  -- this place expired: its process stalled past the lease
    END IF;
    SELECT min(ticket) INTO v_first FROM session_queue WHERE session_key = p_key;
    IF v_first <> p_ticket THEN
        RETURN NULL;
    END IF;
    SELECT token, holder, expires_at INTO v_token, v_holder, v_expires
        FROM session_leases WHERE session_key = p_key;
    IF FOUND AND v_holder IS NOT NULL AND v_holder <> p_ticket AND v_expires > v_now THEN
        RETURN NULL;
    END IF;
    INSERT INTO session_leases (session_key, token, holder, expires_at)
        VALUES (p_key, 1, p_ticket, v_until)
        ON CONFLICT (session_key) DO UPDATE
        SET token = session_leases.token + 1, holder = p_ticket, expires_at = v_until
        RETURNING token INTO v_token;
    RETURN v_token;
END $$;

-- A new place at the end of the queue and, if the session is free, the session too:
-- the common case in one round trip.
CREATE FUNCTION nanobot_join_turn(
    p_key TEXT, p_lease_s DOUBLE PRECISION, OUT ticket BIGINT, OUT token BIGINT
) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_queue (session_key, expires_at)
        VALUES (p_key, clock_timestamp() + make_interval(secs => p_lease_s))
        RETURNING session_queue.ticket INTO ticket;
    token := nanobot_take_turn(p_key, ticket, p_lease_s);
END $$;
"""


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
            -- The turn before this one on its branch; superseded once a front end
            -- showed another branch (domain/branches.py); the front end's message ids.
            parent_no   INTEGER,
            superseded  BOOLEAN NOT NULL DEFAULT FALSE,
            ids         TEXT,
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
            session_key   TEXT,
            original_name TEXT,
            mime          TEXT NOT NULL,
            size          BIGINT NOT NULL,
            data          BYTEA NOT NULL,
            created_at    DOUBLE PRECISION NOT NULL
        );
        """,
    ),
    Migration("0004-take-turn", _TAKE_TURN_FUNCTION),
    Migration(
        "0100-responses",
        """
        CREATE TABLE responses (
            seq              BIGSERIAL UNIQUE,
            id               TEXT PRIMARY KEY,
            session_key      TEXT NOT NULL,
            created_at       DOUBLE PRECISION NOT NULL,
            status           TEXT NOT NULL,
            cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
            body             TEXT NOT NULL
        );
        CREATE INDEX responses_by_session ON responses (session_key, seq);
        CREATE TABLE response_steps (
            response_id TEXT NOT NULL,
            step_no     INTEGER NOT NULL,
            step        TEXT NOT NULL,
            PRIMARY KEY (response_id, step_no)
        );
        CREATE TABLE conversations (
            session_key TEXT PRIMARY KEY,
            created_at  DOUBLE PRECISION NOT NULL,
            metadata    TEXT NOT NULL
        );
        """,
    ),
    Migration(
        "0101-paused-calls",
        """
        CREATE TABLE paused_calls (
            seq         BIGSERIAL PRIMARY KEY,
            call_id     TEXT NOT NULL,
            session_key TEXT NOT NULL
        );
        CREATE INDEX paused_calls_by_call ON paused_calls (call_id);
        CREATE INDEX paused_calls_by_session ON paused_calls (session_key);
        """,
    ),
    Migration(
        "0102-requests",
        # Idempotency-Key records, per-key request counts, turn slots (postgres_requests).
        """
        CREATE TABLE idempotency (
            scope        TEXT NOT NULL,
            key          TEXT NOT NULL,
            fingerprint  TEXT NOT NULL,
            created_at   DOUBLE PRECISION NOT NULL,
            lease_until  DOUBLE PRECISION NOT NULL,
            status       INTEGER,
            content_type TEXT,
            body         BYTEA,
            headers      TEXT,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX idempotency_age ON idempotency (created_at);
        CREATE TABLE rate_counts (
            bucket       TEXT PRIMARY KEY,
            window_start DOUBLE PRECISION NOT NULL,
            count        INTEGER NOT NULL
        );
        CREATE TABLE slots (
            bucket      TEXT NOT NULL,
            token       TEXT NOT NULL,
            lease_until DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (bucket, token)
        );
        """,
    ),
    Migration(
        "0103-response-liveness",
        "ALTER TABLE responses ADD COLUMN alive_until DOUBLE PRECISION",
    ),
    Migration(
        "0110-outbox-attempt-log",
        # The record of each event's last attempts (outbox_rows); old events get none.
        "ALTER TABLE outbox ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]'",
    ),
)
