"""Memory held by history caches at their one bound (``HISTORY_CACHE_SESSIONS``).

Two caches hold recent history: the SQLite store's (``RecentHistory``: the turn
objects of each session's bounded window) and the model adapter's request encoder
(each window's encoded JSON text). Both are bounded by the same number of sessions,
and the encoder's windows hold the store's own turn objects (the identity contract of
``SessionStore.history``), so the turns are counted once. This fills both to the bound
with full windows and reports what they hold.

    .venv/bin/python bench/history_cache.py [--message-chars 200]
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc

from nanobot_api.adapters.llm.request_encoder import RequestEncoder
from nanobot_api.adapters.storage.recent import RecentHistory
from nanobot_api.app.config import AgentDefaults
from nanobot_api.app.wiring.storage import HISTORY_CACHE_SESSIONS
from nanobot_api.domain.conversation import Message, TurnRecord, bounded_history
from nanobot_api.domain.models import ModelRequest


def window(session: int, max_messages: int, chars: int) -> tuple[TurnRecord, ...]:
    turns = [
        TurnRecord((Message.user(f"{session}-{n} " + "q" * chars), Message.assistant("a" * chars)))
        for n in range(max_messages // 2)
    ]
    return bounded_history(tuple(turns), max_messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--message-chars", type=int, default=200)
    args = parser.parse_args()
    max_messages = AgentDefaults().max_history_messages
    sessions = HISTORY_CACHE_SESSIONS
    gc.collect()
    tracemalloc.start()
    recent = RecentHistory(sessions)
    encoder = RequestEncoder(sessions)
    histories = []
    for session in range(sessions):
        history = window(session, max_messages, args.message_chars)
        key = f"api:s{session}"
        recent.put(key, max_messages, history, recent.token(key))
        encoder.encode("m", ModelRequest(history=history, messages=()), stream=True)
        histories.append(history)
    del histories  # what remains is what the caches hold
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    text = sessions * max_messages * args.message_chars
    print(
        f"history caches at their bound: {sessions} sessions x {max_messages} messages "
        f"of ~{args.message_chars} chars"
    )
    print(f"  memory held: {held / 2**20:.1f} MiB ({held / sessions / 1024:.0f} KiB a session)")
    print(f"  message text alone: {text / 2**20:.1f} MiB; held / text: {held / text:.1f}x")


if __name__ == "__main__":
    main()
