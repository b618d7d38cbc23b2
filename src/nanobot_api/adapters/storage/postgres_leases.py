"""Per-session leases in PostgreSQL: one turn at a time per session across every
process and replica, in the order the turns took their places in the session's queue.

A turn takes a place (a ``ticket`` from a sequence), then holds the session's lease
once its ticket is the oldest live one and no other holder's lease is unexpired. Taking
the lease increments the session's fencing ``token``; a commit carries the token and is
refused if it has moved on. Places and leases carry an expiry (the database's clock),
renewed while their turn waits or runs, so a killed process frees its sessions within
``storage.leaseS``.
"""

from __future__ import annotations

from nanobot_api.adapters.storage.leases import PolledLeases
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.domain.sessions import Lease, lease_lost


class PostgresSessionLeases(PolledLeases):
    """SessionLeases in a PostgreSQL database; leases last ``lease_s`` unless renewed."""

    def __init__(self, db: PostgresDatabase, *, lease_s: float) -> None:
        self._db = db
        self._lease_s = lease_s

    async def _join(self, key: str) -> tuple[int, int | None]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT ticket, token FROM nanobot_join_turn(%s, %s)", (key, self._lease_s)
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), None if row[1] is None else int(row[1])

    async def _take(self, key: str, ticket: int) -> int | None:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT nanobot_take_turn(%s, %s, %s)", (key, ticket, self._lease_s)
            )
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    async def renew(self, lease: Lease) -> None:
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE session_leases SET expires_at = clock_timestamp() + "
                "make_interval(secs => %s) WHERE session_key = %s AND token = %s",
                (self._lease_s, str(lease.key), lease.token),
            )
            if cursor.rowcount == 0:
                raise lease_lost()
            await conn.execute(
                "UPDATE session_queue SET expires_at = clock_timestamp() + "
                "make_interval(secs => %s) WHERE ticket = %s",
                (self._lease_s, lease.ticket),
            )

    async def release(self, lease: Lease) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE session_leases SET holder = NULL WHERE session_key = %s AND token = %s",
                (str(lease.key), lease.token),
            )
            await conn.execute("DELETE FROM session_queue WHERE ticket = %s", (lease.ticket,))

    async def _leave(self, ticket: int) -> None:
        async with self._db.connection() as conn:
            await conn.execute("DELETE FROM session_queue WHERE ticket = %s", (ticket,))
