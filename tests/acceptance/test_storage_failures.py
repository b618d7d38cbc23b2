"""Storage that fails under a running server (scale-out.md): the server says so, keeps
nothing half written, and recovers by itself when it can."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import httpx
import pytest

from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import TemporaryPostgres, temporary_postgres
from tests.acceptance.replicas import replica

pytestmark = pytest.mark.slow


async def ask(origin: str, text: str, session: str = "f") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{origin}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": text}], "session_id": session},
        )


def take_away(path: Path, replace: bool) -> None:
    """What an operator's ``rm`` (or a restore over the file) does to a running server."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if replace:
        sqlite3.connect(path).close()  # another, empty database at the same path


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_sessions_file_gone_from_under_the_server_stops_its_200s(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    config = attrs.evolve(Config(), workspace=workspace)
    path = workspace / "sessions.sqlite3"
    async with running_server(build(config)) as server:
        assert (await ask(server.origin, "kept")).status_code == 200
        await anyio.to_thread.run_sync(take_away, path, how == "replaced")
        with caplog.at_level(logging.ERROR):
            for _ in range(2):
                refused = await ask(server.origin, "would be lost")
                assert refused.status_code == 503
                assert refused.json()["error"]["type"] == "storage_unavailable"
                assert int(refused.headers["Retry-After"]) > 0
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"{server.origin}/health/ready")
    # A load balancer's probe sees it too, with the reason.
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"storage": "unavailable (StorageUnavailable)"},
    }
    said = [r.getMessage() for r in caplog.records if "while the server ran" in r.getMessage()]
    assert len(said) == 1  # said once, with the path and what happened
    assert str(path) in said[0]
    assert ("deleted" if how == "deleted" else "replaced") in said[0]


@pytest.fixture(name="own_postgres")
def _own_postgres() -> Iterator[TemporaryPostgres]:
    """A server of this test's own, to stop and start again (a shared one cannot be)."""
    with temporary_postgres() as server:
        yield server


async def test_a_database_down_while_serving_is_503_then_recovers_by_itself(
    tmp_path: Path, own_postgres: TemporaryPostgres
) -> None:
    url = own_postgres.create_database("down")
    config = {"storage": {"url": url, "leaseS": 2}}
    async with replica(tmp_path, config, "r") as served:
        assert (await ask(served.origin, "before")).status_code == 200
        own_postgres.pause()
        try:
            refused = await ask(served.origin, "while down")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["type"] == "storage_unavailable"
            assert int(refused.headers["Retry-After"]) > 0
            assert url.split("@")[0] not in refused.text
        finally:
            own_postgres.resume()
        answers = [(await ask(served.origin, f"after {n}")).status_code for n in range(4)]
        assert answers[-1] == 200, answers
    # Nothing of the refused turn was kept.
    async with PostgresDatabase(url) as db:
        kept = await PostgresSessionStore(db).history(SessionKey("api", "f"))
    texts = [turn.user_text for turn in kept]
    assert "while down" not in texts
    assert texts[0] == "before"


@pytest.mark.parametrize("store", ["responses", "requests"])
async def test_every_store_file_gone_from_under_the_server_stops_its_200s(
    tmp_path: Path, store: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not the sessions file only: a response or an Idempotency-Key record written to a
    deleted file would be lost at the next restart, so it is refused."""
    workspace = tmp_path / "ws"
    config = attrs.evolve(Config(), workspace=workspace)
    path = workspace / f"{store}.sqlite3"

    async def post(text: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.origin, timeout=30) as client:
            if store == "responses":
                return await client.post("/v1/responses", json={"input": text})
            body = {"messages": [{"role": "user", "content": text}], "session_id": text}
            headers = {"Idempotency-Key": text}
            return await client.post("/v1/chat/completions", json=body, headers=headers)

    async with running_server(build(config)) as server:
        assert (await post("kept")).status_code == 200
        await anyio.to_thread.run_sync(take_away, path, False)
        with caplog.at_level(logging.ERROR):
            refused = await post("would-be-lost")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["type"] == "storage_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    said = [r.getMessage() for r in caplog.records if "while the server ran" in r.getMessage()]
    assert said, "the log says why"
    assert str(path) in said[0]
    assert "deleted" in said[0]
