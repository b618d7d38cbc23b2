"""What the bound on uploads (``api.maxMediaMb``) spares: the sessions with a turn
running here, and the files that messages accepted but not yet delivered will send."""

from __future__ import annotations

from collections import Counter

from nanobot_api.domain.errors import StorageUnavailable
from nanobot_api.domain.ports import AwaitedFiles


async def awaited_files(awaited: AwaitedFiles | None) -> frozenset[str] | None:
    """The names of the files the outbox still has to send; None if it cannot be read
    now (then nothing may go: over the bound for a while rather than lose a file)."""
    if awaited is None:
        return frozenset()
    try:
        return await awaited.awaited_files()
    except StorageUnavailable:
        return None


class RunningSession:
    """Counts ``name`` as a session with a turn running while the block runs."""

    # A class rather than a @contextmanager generator: it wraps every turn.
    __slots__ = ("_counts", "_name")

    def __init__(self, counts: Counter[str], name: str) -> None:
        self._counts = counts
        self._name = name

    def __enter__(self) -> None:
        self._counts[self._name] += 1

    def __exit__(self, *exc_info: object) -> None:
        left = self._counts[self._name] - 1
        if left:
            self._counts[self._name] = left
        else:
            del self._counts[self._name]
