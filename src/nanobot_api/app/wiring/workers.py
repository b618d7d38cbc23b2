"""``nanobot serve --workers N``: N processes answering on one port.

The parent binds the port, reaches the storage once (waiting for a database that is
not up yet, migrating its schema) and forks the workers; each builds its own app and
serves the inherited socket, the kernel handing each new connection to one of them.
State is shared only through the storage (SQLite files or one PostgreSQL database), and
session leases keep each session's turns one at a time across the workers. SIGINT or
SIGTERM to the parent stops every worker gracefully; the parent exits once they have.

The parent passes a stop on as ``FROM_PARENT`` (SIGUSR1), not as the signal it got:
systemd (KillMode=control-group) sends SIGTERM to every process of the unit, so a worker
gets the same stop twice, straight and through the parent, and must tell the copy from
a second stop (which means "stop now"). A worker counts the two sources apart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

FROM_PARENT = signal.SIGUSR1
"""The signal a worker gets when the parent was told to stop (by SIGTERM or SIGINT)."""

_early: list[signal.Signals] = []


def _hold_early_stops() -> None:
    """A stop that comes while the worker still builds its app (the other worker may
    already answer) is kept for the server's watch, instead of ending the worker by the
    default action (exit -10 or -15, which the parent reports as a failure)."""
    for signum in (signal.SIGTERM, signal.SIGINT, FROM_PARENT):
        signal.signal(signum, lambda number, frame: _early.append(signal.Signals(number)))


def early_stops() -> list[signal.Signals]:
    """The stop signals this worker got before its server watched for them, oldest
    first (none in a single process); each is returned once."""
    stops = list(_early)
    _early.clear()
    return stops


def _exit_with_parent() -> None:
    """Stops this worker (as SIGTERM does) if the parent dies without passing a signal
    on (``kill -9``), so no orphan keeps serving the port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_workers(
    count: int,
    sock: socket.socket,
    serve_one: Callable[[int], None],
    *,
    on_exit: Callable[[int], None] = lambda pid: None,
) -> int:
    """Forks ``count`` workers, each running ``serve_one(n)`` (n from 0), supervises them
    until they have all exited (calling ``on_exit(pid)`` as each does), and returns 0 if
    all of them exited cleanly, else 1."""
    pids: dict[int, int] = {}
    for number in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                # A process group of its own: a Ctrl-C reaches the parent only, which
                # passes it on once (two would stop a worker without draining).
                os.setpgid(0, 0)
                _hold_early_stops()
                _exit_with_parent()
                serve_one(number)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        pids[pid] = number
    sock.close()  # the workers hold it now

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(pid, FROM_PARENT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = False
    while pids:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        number = pids.pop(pid, -1)
        on_exit(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            failed = True
            log.error("worker %s exited with %s", number, code)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Ignored up to the exit: at finalization Python puts the default handler back
        # in place of ``forward``, and a late second signal would end the parent by it.
        signal.signal(signum, signal.SIG_IGN)
    sys.stderr.flush()
    return 1 if failed else 0
