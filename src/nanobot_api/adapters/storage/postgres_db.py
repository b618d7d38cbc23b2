"""One PostgreSQL database shared by every store of a process: a connection pool, the
schema migrations, and the one place where the driver's failures become domain errors.

The driver is psycopg 3 (async, with psycopg_pool): it measured level with asyncpg on
the session store's hot path (bench/postgres_drivers.py) and, being libpq, takes every
connection-string form libpq does (URLs, ``key=value`` strings, service files, SSL
settings), which ``storage.url`` promises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from nanobot_api.adapters.storage.postgres_schema import MIGRATIONS, Migration
from nanobot_api.domain.errors import SchemaMismatch, StorageUnavailable

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of schema changes: "nano" in ASCII.
_MIGRATION_LOCK = 0x6E616E6F
_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS nanobot_schema (
    name       TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class _Unreachable(Exception):
    """A connection attempt failed; the text says why (no credential in it)."""


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a connection string, never its password (for messages)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError for a malformed string
        return "the configured database"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or 5432)
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


class PostgresDatabase:
    """A pool of connections to ``url`` (autocommit; a transaction is asked for).

    ``await db.open(retry_for_s=...)`` connects (retrying with backoff for that long)
    and migrates the schema; ``await db.close()`` closes the pool. Every use translates
    a lost or refused connection into StorageUnavailable, so callers see one error for
    "the database is down" whatever the driver said.
    """

    def __init__(self, url: str, *, max_connections: int = 16, wait_s: float = 3.0) -> None:
        self._url = url
        self._max = max_connections
        self._wait_s = wait_s
        self._pool: AsyncConnectionPool[AsyncConnection] | None = None
        self._open_lock = anyio.Lock()
        self.where = describe_url(url)

    async def open(self, *, retry_for_s: float = 0.0, migrate: bool = True) -> Self:
        """Connects (and migrates); raises StorageUnavailable once ``retry_for_s`` has
        passed without a connection. Idempotent."""
        async with self._open_lock:
            if self._pool is not None:
                return self
            deadline = time.monotonic() + retry_for_s
            pause = 0.25
            while True:
                try:
                    self._pool = await self._connect()
                    break
                except _Unreachable as exc:
                    if time.monotonic() + pause > deadline:
                        waited = f"gave up after {retry_for_s:g}s: " if retry_for_s > 0 else ""
                        raise StorageUnavailable(
                            f"cannot reach the database {self.where} ({waited}{exc})"
                        ) from exc
                    log.debug("database %s unreachable; retrying in %.1fs", self.where, pause)
                    await anyio.sleep(pause)
                    pause = min(pause * 2, 5.0)
        if migrate:
            await self.migrate()
        return self

    async def _connect(self) -> AsyncConnectionPool[AsyncConnection]:
        import psycopg
        from psycopg import AsyncConnection
        from psycopg_pool import AsyncConnectionPool

        # One plain connection first: it fails fast, and quietly (a pool would log each
        # of its own retries), while the database is not up yet.
        try:
            probe = await AsyncConnection.connect(
                self._url, connect_timeout=max(1, round(self._wait_s))
            )
        except psycopg.Error as exc:
            raise _Unreachable(self._reason(exc)) from exc
        await probe.close()

        pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._max,
            open=False,
            timeout=self._wait_s,
            kwargs={"autocommit": True},
            connection_class=AsyncConnection,
        )
        try:
            await pool.open(wait=True, timeout=self._wait_s)
        except Exception as exc:
            await pool.close()
            raise _Unreachable(type(exc).__name__) from exc
        return pool

    def _reason(self, exc: BaseException) -> str:
        """The driver's first line about a failed connection, with no password in it."""
        from psycopg.conninfo import conninfo_to_dict

        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        try:
            password = conninfo_to_dict(self._url).get("password")
        except Exception:  # a malformed string: nothing of it is shown
            return type(exc).__name__
        if password:
            text = text.replace(str(password), "***")
        return text

    async def close(self) -> None:
        """Closes every connection; later uses reconnect only through :meth:`open`."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection from the pool, in autocommit mode, for the block's duration."""
        import psycopg

        if self._pool is None:
            await self.open()
        pool = self._pool
        assert pool is not None
        try:
            async with pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # Broken connections may wait idle in the pool: have it look at them now,
            # so the server recovers on the next request once the database is back.
            _background(pool.check())
            raise self._unavailable(exc) from exc

    async def ping(self) -> None:
        """Raises StorageUnavailable unless the database answers a query now, and
        SchemaMismatch unless it holds exactly the migrations this code knows (a newer
        nanobot-api may have migrated it under this server)."""
        async with self.connection() as conn:
            done = await _applied(conn)
        _refuse_unknown(done, self.where)
        missing = [m.name for m in MIGRATIONS if m.name not in done]
        if missing:
            raise SchemaMismatch(
                f"The database ({self.where}) lacks migrations {', '.join(missing)}; "
                "restart the server to apply them"
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction: committed if the block ends normally."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        # The driver's text may quote the connection string: only its class is shown.
        return StorageUnavailable(
            f"The database ({self.where}) is unavailable ({type(exc).__name__}); try again shortly"
        )

    # --- schema --------------------------------------------------------------------------

    async def migrate(self) -> tuple[str, ...]:
        """Applies the migrations this database lacks, under a database-wide lock, so
        replicas starting together apply each once; returns the names applied.

        Raises StorageUnavailable if the database holds migrations this code does not
        know (a newer nanobot-api wrote it)."""
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(_SCHEMA_TABLE)
            done = await _applied(conn)
            _refuse_unknown(done, self.where)
            applied: list[str] = []
            for migration in MIGRATIONS:
                if migration.name not in done:
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO nanobot_schema (name) VALUES (%s)", (migration.name,)
                    )
                    applied.append(migration.name)
        if applied:
            log.info("database %s: applied %s", self.where, ", ".join(applied))
        return tuple(applied)

    async def schema_status(self) -> tuple[tuple[Migration, bool], ...]:
        """Every migration this code knows, and whether the database has it."""
        async with self.connection() as conn:
            await conn.execute(_SCHEMA_TABLE)
            done = await _applied(conn)
        _refuse_unknown(done, self.where)
        return tuple((m, m.name in done) for m in MIGRATIONS)


async def _applied(conn: AsyncConnection) -> set[str]:
    cursor = await conn.execute("SELECT name FROM nanobot_schema")
    return {str(row[0]) for row in await cursor.fetchall()}


def _refuse_unknown(done: set[str], where: str) -> None:
    unknown = done - {m.name for m in MIGRATIONS}
    if unknown:
        raise SchemaMismatch(
            f"The database ({where}) was migrated by a newer nanobot-api "
            f"({', '.join(sorted(unknown))}); upgrade this one"
        )


_tasks: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None]) -> None:
    # Kept referenced until done: the event loop holds tasks only weakly.
    task = asyncio.ensure_future(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
