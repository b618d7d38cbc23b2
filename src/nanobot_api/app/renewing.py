"""Renewals of a lease (a session's, a turn slot's) that cost nothing until due."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Renewing:
    """Runs ``renewals`` in a task of its own from ``after_s`` on, until cancelled.

    A timer until then, not a task: most turns end before their first renewal, and a
    task per turn (started, scheduled, cancelled) was paid by every turn of a busy
    server (bench/inflight.py).
    """

    def __init__(self, renewals: Coroutine[Any, Any, None], after_s: float) -> None:
        self._renewals = renewals
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after_s, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renewals)

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is None:
            self._renewals.close()  # never started: nothing to wait for
        else:
            self._task.cancel()
