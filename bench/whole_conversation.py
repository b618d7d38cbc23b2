"""What a whole-conversation request costs the server, against a request holding only
the new message, as a session grows (``api.history = "latest"``).

A front end such as Open WebUI resends the whole conversation every turn; the server
then reads every stored turn of the session (``SessionStore.turns``, superseded ones
included) to find the branch the request follows (domain/branches.py). That read is
linear in the session's size. This prints, for sessions of 10, 100 and 1,000 turns:

- server CPU per request (the ``nanobot serve`` process's user+system time over the
  requests, echo agent, SQLite), for a request with only the new message and for one
  with the whole conversation;
- the ``turns()`` read alone (p50, in-process, same storage), the part of the
  whole-conversation cost that grows with the stored turns rather than with the body.

A model turn takes hundreds of milliseconds; the last column puts the whole
conversation's extra CPU against 300 ms. ``--postgres`` runs the same on a temporary
PostgreSQL server of its own (the server's CPU then excludes the database's).

    .venv/bin/python bench/whole_conversation.py [requests_per_case] [--postgres]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import nanobot_server

from nanobot_api.app.wiring.storage import storage_at
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import temporary_postgres

SIZES = (10, 100, 1000)
MODEL_TURN_MS = 300.0
# A user message of a realistic length (about 250 characters).
QUESTION = (
    "Could you summarise the trade-offs between the two designs we discussed, the one "
    "with a queue per session and the one with a lease in the database, for a team "
    "running three replicas? Question number {n}."
)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def post(
    http: aiohttp.ClientSession, url: str, session: str, messages: list[dict[str, str]]
) -> str:
    body = {"messages": messages, "session_id": session}
    async with http.post(url, json=body) as response:
        payload = await response.json()
        assert response.status == 200, payload
    return str(payload["choices"][0]["message"]["content"])


async def fill(
    http: aiohttp.ClientSession, url: str, session: str, turns: int
) -> list[dict[str, str]]:
    """Stores ``turns`` turns sending only each new message; returns the conversation."""
    conversation: list[dict[str, str]] = []
    for n in range(turns):
        question = {"role": "user", "content": QUESTION.format(n=n)}
        answer = await post(http, url, session, [question])
        conversation += [question, {"role": "assistant", "content": answer}]
    return conversation


async def measure(port: int, pid: int, size: int, requests: int) -> tuple[float, float]:
    """Server CPU ms per request: (new message only, whole conversation)."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession() as http:
        only_new = f"new-{size}"
        await fill(http, url, only_new, size)
        whole = f"whole-{size}"
        conversation = await fill(http, url, whole, size)
        began = cpu_s(pid)
        for n in range(requests):
            await post(http, url, only_new, [{"role": "user", "content": QUESTION.format(n=n)}])
        new_ms = (cpu_s(pid) - began) * 1000 / requests
        began = cpu_s(pid)
        for n in range(requests):
            question = {"role": "user", "content": QUESTION.format(n=size + n)}
            answer = await post(http, url, whole, [*conversation, question])
            conversation += [question, {"role": "assistant", "content": answer}]
        whole_ms = (cpu_s(pid) - began) * 1000 / requests
    return new_ms, whole_ms


async def turns_read_ms(size: int, url: str) -> float:
    """p50 of the store's ``turns`` on a session of ``size`` such turns."""
    with tempfile.TemporaryDirectory() as tmp:
        async with storage_at(url, Path(tmp)).opened() as storage:
            store, key = storage.sessions, SessionKey("api", f"bench-{size}")
            for n in range(size):
                question = QUESTION.format(n=n)
                answer = f"echo: {question} (turn {n + 1})"
                await store.commit(
                    key, TurnRecord((Message.user(question), Message.assistant(answer)))
                )
            samples = []
            for _ in range(21):
                start = time.perf_counter()
                await store.turns(key)
                samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main(requests: int, postgres: bool) -> None:
    with contextlib.ExitStack() as stack:
        url = ""
        if postgres:
            database = stack.enter_context(temporary_postgres())
            url = database.create_database()
        config: dict[str, object] = {"api": {"history": "latest"}, "storage": {"url": url}}
        rows = []
        with nanobot_server(config) as (port, process, _):
            for size in SIZES:
                new_ms, whole_ms = asyncio.run(measure(port, process.pid, size, requests))
                read_ms = asyncio.run(turns_read_ms(size, url))
                rows.append((size, new_ms, whole_ms, read_ms))
    backend = "PostgreSQL" if postgres else "SQLite"
    print(f"server CPU per request, echo agent, {backend}, {requests} requests per cell")
    print(
        "turns stored | new message only | whole conversation | turns() read |"
        f" extra vs {MODEL_TURN_MS:.0f} ms model turn"
    )
    for size, new_ms, whole_ms, read_ms in rows:
        extra = (whole_ms - new_ms) / MODEL_TURN_MS * 100
        print(
            f"{size:12} | {new_ms:13.1f} ms | {whole_ms:15.1f} ms | {read_ms:9.2f} ms |"
            f" {extra:5.1f} %"
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--postgres"]
    main(int(args[0]) if args else 20, "--postgres" in sys.argv[1:])
