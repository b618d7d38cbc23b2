"""`api.busy: "reject"` across processes (scale-out.md): two `nanobot serve` replicas on
one PostgreSQL database; while one runs a turn of session S, the other refuses a turn of
S with 409 `session_busy` (an OpenAI error body), and still serves another session."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import anyio
import httpx
import pytest

from tests.acceptance.replicas import replica
from tests.upstream import ScriptedUpstream, Text

pytestmark = pytest.mark.slow


def chat(session: str, text: str, *, stream: bool = False) -> dict[str, object]:
    return {
        "messages": [{"role": "user", "content": text}],
        "session_id": session,
        "stream": stream,
    }


async def test_a_busy_session_is_refused_409_by_another_replica_while_others_run(
    tmp_path: Path, postgres_url: str
) -> None:
    gate = asyncio.Event()
    async with ScriptedUpstream([Text("slow answer", pieces=("slow ", "answer"), gate=gate)]) as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": {"url": postgres_url, "leaseS": 2},
            "api": {"busy": "reject"},
        }
        async with contextlib.AsyncExitStack() as stack:
            one = await stack.enter_async_context(replica(tmp_path, config, "b1"))
            two = await stack.enter_async_context(replica(tmp_path, config, "b2"))
            async with (
                httpx.AsyncClient(timeout=60) as slow_client,
                httpx.AsyncClient(timeout=60) as client,
            ):
                # S's turn runs on replica one: its first piece is out, the rest waits.
                async with slow_client.stream(
                    "POST", f"{one.origin}/v1/chat/completions", json=chat("S", "slow", stream=True)
                ) as slow:
                    assert slow.status_code == 200
                    lines = slow.aiter_lines()
                    with anyio.fail_after(30):
                        async for line in lines:
                            if line.startswith("data:") and "slow" in line:
                                break
                    refused = await client.post(
                        f"{two.origin}/v1/chat/completions", json=chat("S", "again")
                    )
                    other = await client.post(
                        f"{two.origin}/v1/chat/completions", json=chat("T", "meanwhile")
                    )
                    gate.set()
                    rest = [line async for line in lines]
                assert refused.status_code == 409, refused.text
                error = refused.json()["error"]
                # configuration.md: reject answers 409 with type session_busy.
                assert error["type"] == "session_busy"
                assert error["message"]
                assert refused.headers.get("Retry-After")
                assert other.status_code == 200, other.text
                answer = other.json()["choices"][0]["message"]["content"]
                assert answer == "echo: meanwhile"
                assert "data: [DONE]" in rest
                # S is free again once its turn ended: the other replica now serves it.
                after = await client.post(
                    f"{two.origin}/v1/chat/completions", json=chat("S", "now")
                )
                assert after.status_code == 200, after.text
    texts = [r.last_user_text for r in up.received]
    assert "again" not in texts  # the refused turn never reached the model
    assert texts[:2] == ["slow", "meanwhile"]
