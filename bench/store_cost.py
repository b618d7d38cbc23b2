"""Per-turn cost of the SQLite session store as it fills up.

A turn costs one bounded history read (maxHistoryMessages = 200) and one commit. Prints
the p50 of that pair, in microseconds, early and late in a session of 1,000 turns, and
for a fresh session once the file holds 10,000 sessions; "cold" reads bypass the
in-memory recent history, so they show the file's own cost.

    .venv/bin/python bench/store_cost.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio

from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.sessions import SessionKey

MAX_HISTORY = 200


def a_turn(n: int) -> TurnRecord:
    call = ToolCall(f"call_{n}", "lookup", '{"q": "weather in Paris"}')
    return TurnRecord(
        (
            Message.user(f"question {n}: what is the weather like in Paris today?"),
            Message.assistant(None, (call,)),
            Message.tool_result(call.id, "Sunny, 21 C, light wind from the west."),
            Message.assistant("It is sunny in Paris, 21 degrees, with a light westerly wind."),
        )
    )


async def turn_cost(store: SqliteSessionStore, key: SessionKey, n: int, *, cold: bool) -> float:
    if cold:
        store._recent.reset()  # the file alone, without the cache
    start = time.perf_counter()
    await store.history(key, MAX_HISTORY)
    await store.commit(key, a_turn(n))
    return time.perf_counter() - start


def us(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:8.0f}"


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with SqliteSessionStore(Path(tmp) / "sessions.sqlite3") as store:
            key = SessionKey("api", "long")
            print("one session, p50 us per turn (history read + commit)")
            print("  turns        warm     cold")
            for n in range(1, 1001):
                if n % 200 == 1 or n == 1000:
                    warm = [await turn_cost(store, key, n, cold=False) for _ in range(20)]
                    cold = [await turn_cost(store, key, n, cold=True) for _ in range(20)]
                    print(f"  {n:5}    {us(warm)} {us(cold)}")
                else:
                    await turn_cost(store, key, n, cold=False)
            started = time.perf_counter()
            for i in range(10_000):
                await store.commit(SessionKey("api", f"user-{i}"), a_turn(i))
            fill = (time.perf_counter() - started) / 10_000
            print(f"10,000 sessions written, {fill * 1e6:.0f} us per commit")
            fresh = [
                await turn_cost(store, SessionKey("api", f"new-{i}"), 0, cold=True)
                for i in range(200)
            ]
            busy = [
                await turn_cost(store, SessionKey("api", f"user-{i * 37}"), 1, cold=True)
                for i in range(200)
            ]
            print(f"with 10,000 sessions: new session {us(fresh)} us, existing {us(busy)} us")


if __name__ == "__main__":
    anyio.run(main)
