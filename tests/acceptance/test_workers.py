"""`nanobot serve --workers 2`: two processes on one port, on SQLite and on PostgreSQL,
keep one session's turns one at a time on full history (scale-out.md)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from tests.acceptance.replicas import replica
from tests.upstream import ScriptedUpstream

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_workers_run_one_sessions_turns_in_turn_on_full_history(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    storage: dict[str, object] = {"leaseS": 5}
    if backend == "postgres":
        storage["url"] = request.getfixturevalue("postgres_url")
    count = 10
    async with ScriptedUpstream() as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": storage,
        }
        async with replica(tmp_path, config, "w", "--workers", "2") as served:
            assert len(await anyio.to_thread.run_sync(children, served.process.pid)) == 2
            answers: list[int] = []

            async def one(n: int) -> None:
                async with httpx.AsyncClient(timeout=60) as client:  # a connection each
                    answer = await client.post(
                        f"{served.origin}/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": f"w-{n}"}],
                            "session_id": "w",
                        },
                    )
                answers.append(answer.status_code)

            async with anyio.create_task_group() as tg:
                for n in range(count):
                    tg.start_soon(one, n)
    assert answers == [200] * count
    seen = [[m["content"] for m in r.messages if m["role"] == "user"] for r in up.received]
    # One at a time: the k-th turn to run saw the k-1 turns kept before it.
    assert sorted(len(texts) for texts in seen) == list(range(1, count + 1))
    longest = max(seen, key=len)
    for texts in seen:
        assert texts[:-1] == longest[: len(texts) - 1]
