from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from nanobot_api.testing.postgres import ExternalPostgres, TemporaryPostgres, postgres_for_tests

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(name="anyio_backend")
def _anyio_backend() -> str:
    # Quart runs on asyncio only.
    return "asyncio"


# ---- PostgreSQL: one server per test session, shared by every test that needs it ------


@pytest.fixture(name="postgres_server", scope="session")
def _postgres_server() -> Iterator[TemporaryPostgres | ExternalPostgres]:
    """A real PostgreSQL server: ``$NANOBOT_TEST_POSTGRES_URL``'s, or one this session
    starts (pgserver's binaries; as root it runs as ``nobody``). Never skipped: a
    machine that cannot start one fails these tests."""
    with postgres_for_tests() as server:
        yield server


@pytest.fixture(name="postgres_url")
def _postgres_url(postgres_server: TemporaryPostgres | ExternalPostgres) -> str:
    """A new, empty database of its own for this test (no schema yet)."""
    return postgres_server.create_database()


@pytest.fixture(name="shared_postgres_url", scope="session")
def _shared_postgres_url(postgres_server: TemporaryPostgres | ExternalPostgres) -> str:
    """One database for contract tests, which open it with ``scratch_database(url)``
    (migrated, emptied afterwards). A sync fixture, so a parametrized async fixture can
    take it with ``request.getfixturevalue``."""
    return postgres_server.create_database()
