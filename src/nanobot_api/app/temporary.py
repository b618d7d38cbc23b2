"""Temporary chats leave nothing behind: their sessions go once idle for a while.

Open WebUI keeps a temporary chat nowhere, and names it ``temporary:<socket id>``; the
server must not keep it for ever either. Every session under that name is deleted,
superseded turns included, once no turn has been stored in it for ``api.temporaryTtlS``,
and the files uploaded in it go with it (an API client may send images to one), and so
does what the Responses API kept of it (``conversation: "temporary:..."`` names one):
its responses and their steps, the calls a paused turn waits for, a conversation record.

Uploads and records can also outlive their session another way: another replica forgot
it (this machine still has its working copy), a turn saved a file and never committed
(the process was killed), or a response failed (kept, with no turn). So now and then
the sweep also removes the uploads and records of temporary chats that hold no turn at
all; that pass reads every upload's metadata, so it runs less often than the sessions'
sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Final

import anyio

from nanobot_api.domain.front_ends import TEMPORARY_CHAT
from nanobot_api.domain.ports import ForgetsSessionRecords, ForgetsUploads, SessionStore
from nanobot_api.domain.sessions import API_CHANNEL, SessionKey

TEMPORARY_KEYS: Final = f"{API_CHANNEL}:{TEMPORARY_CHAT}"
# A sweep is one indexed range query; running it this often keeps a temporary chat
# at most this long past its time.
MAX_SWEEP_EVERY_S: Final = 30.0
# The uploads left without a session are looked for at most this often.
MAX_ORPHANS_EVERY_S: Final = 300.0
log = logging.getLogger(__name__)


class TemporaryChats:
    """Sweeps idle temporary chats out of ``store``, their files out of ``uploads`` and
    what the Responses API kept of them out of each of ``records``, while the server
    runs."""

    def __init__(
        self,
        store: SessionStore,
        ttl_s: float,
        *,
        uploads: ForgetsUploads | None = None,
        records: Sequence[ForgetsSessionRecords] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._records = tuple(records)
        self._ttl_s = ttl_s
        self._clock = clock
        self.every_s = min(ttl_s / 4, MAX_SWEEP_EVERY_S)
        self.orphans_every_s = min(ttl_s, MAX_ORPHANS_EVERY_S)
        self._orphans_due = 0.0
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Deletes the temporary chats idle for the TTL, their uploads and records;
        returns how many chats went."""
        now = self._clock()
        idle_since = now - self._ttl_s
        gone = await self._store.forget_idle(TEMPORARY_KEYS, idle_since)
        if gone:
            # What was made since the cut-off belongs to a turn that began meanwhile
            # (the session starts again with it): it stays.
            for records in self._records:
                await records.forget_records(gone, idle_since)
            if self._uploads is not None:
                await self._uploads.forget_uploads(gone, idle_since)
        if now >= self._orphans_due:
            self._orphans_due = now + self.orphans_every_s
            await self._forget_orphans(idle_since)
        return len(gone)

    async def _forget_orphans(self, idle_since: float) -> None:
        """Removes the old uploads and records of temporary chats that hold no turn."""
        removed = 0
        # Each store names its own sessions, mostly the same ones: each asked about once.
        turnless: dict[SessionKey, bool] = {}
        for records in self._records:
            found = await records.sessions_with_records(TEMPORARY_KEYS, idle_since)
            orphans = await self._without_turns(found, turnless)
            if orphans:
                removed += await records.forget_records(orphans, idle_since)
        if self._uploads is not None:
            found = await self._uploads.sessions_with_uploads(TEMPORARY_KEYS, idle_since)
            orphans = await self._without_turns(found, turnless)
            if orphans:
                removed += await self._uploads.forget_uploads(orphans, idle_since)
        if removed:
            log.info("temporary chats: removed %d upload(s) or record(s) of no session", removed)

    async def _without_turns(
        self, keys: Collection[SessionKey], turnless: dict[SessionKey, bool]
    ) -> list[SessionKey]:
        for key in keys:
            if key not in turnless:
                turnless[key] = (await self._store.last_turn(key))[0] == 0
        return [key for key in keys if turnless[key]]

    async def _run(self) -> None:
        while True:
            try:
                gone = await self.sweep()
            except Exception:
                # A store that fails now may answer next time; the server goes on.
                log.exception("temporary chats: sweep failed")
            else:
                if gone:
                    log.info("temporary chats: forgot %d idle session(s)", gone)
            await anyio.sleep(self.every_s)

    async def start(self) -> None:
        """Sweeps now and then every ``every_s``, in a task of its own."""
        # A plain asyncio task: it must outlive before_serving, and Quart runs on asyncio.
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
