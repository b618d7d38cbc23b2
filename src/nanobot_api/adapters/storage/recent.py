"""The recent history of the busiest sessions, kept in memory beside the SQLite file.

Every turn reads its session's bounded history before it calls the model. Decoding up
to ``maxHistoryMessages`` messages from the file and handing the work to a thread took
about 1 ms a turn; the answer only changes when the session gets a turn, which this
process writes itself. So the tail is kept here and extended on commit.

Correctness rests on two guards. A read stores its result only if no write to that
session began while it ran (each write stamps the session with a fresh number). And a
write by another process (``nanobot sessions clear`` while serving) is noticed by the
store through SQLite's ``data_version`` and empties the cache.
"""

from __future__ import annotations

from collections import OrderedDict

from nanobot_api.domain.conversation import History, TurnRecord

Token = tuple[int, int]


class RecentHistory:
    """Bounded history per session for one ``max_messages``; least recently used go first."""

    def __init__(self, capacity: int = 256, max_stamps: int = 100_000) -> None:
        self._capacity = capacity
        self._max_stamps = max_stamps
        # key -> (max_messages, bounded history, its message count)
        self._entries: OrderedDict[str, tuple[int, History, int]] = OrderedDict()
        self._stamps: dict[str, int] = {}
        self._tick = 0
        self._resets = 0

    def get(self, key: str, max_messages: int) -> History | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != max_messages:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def token(self, key: str) -> Token:
        """Taken before a read; the read's result is kept only if it is still current."""
        return self._resets, self._stamps.get(key, 0)

    def put(self, key: str, max_messages: int, history: History, token: Token) -> None:
        """Keeps a bounded read of a session's active branch."""
        if token != self.token(key):
            return  # a write to this session began during the read: the result may be old
        self._entries[key] = (max_messages, history, _count(history))
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def writing(self, key: str) -> Token:
        """Called before a write starts: reads still running for ``key`` go unkept."""
        self._tick += 1
        if len(self._stamps) >= self._max_stamps:
            self.reset()
        self._stamps[key] = self._tick
        return self.token(key)

    def appended(self, key: str, record: TurnRecord, token: Token) -> None:
        """After an append landed: extends the kept tail, unless another write overlapped."""
        entry = self._entries.get(key)
        if entry is None:
            return
        if token != self.token(key):
            del self._entries[key]
            return
        max_messages, history, count = entry
        kept, kept_count = _with_turn(history, count, record, max_messages)
        self._entries[key] = (max_messages, kept, kept_count)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def reset(self) -> None:
        """Forgets everything (another process wrote, or too many sessions were stamped)."""
        self._entries.clear()
        self._stamps.clear()
        self._resets += 1


def _count(history: History) -> int:
    return sum(len(record.messages) for record in history)


def _with_turn(
    history: History, count: int, record: TurnRecord, max_messages: int
) -> tuple[History, int]:
    """``bounded_history((*history, record), max_messages)`` and its message count, for a
    history of ``count`` messages already within the bound: only whole turns at its
    front can fall out, so only they are counted."""
    total = count + len(record.messages)
    if len(record.messages) > max_messages:
        return (), 0
    start = 0
    while total > max_messages:
        total -= len(history[start].messages)
        start += 1
    return (*history[start:], record), total
