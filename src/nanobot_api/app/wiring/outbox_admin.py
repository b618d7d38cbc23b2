"""``nanobot outbox list [--status S] [--attempts] | show ID | retry [--force] ID | drop ID``:
look into and steer the outbox.

Each command takes the outbox, a text stream and the clock's reading, and returns the
process exit code (0). An unknown id raises NotFound, which the console entry point
prints as one line with exit code 2. Retrying only marks the event due: a running
server's worker picks it up within a few seconds (it polls the file).
"""

from __future__ import annotations

import datetime
import sys
from typing import TextIO

import anyio

from nanobot_api.adapters.cli.args import OutboxCommand
from nanobot_api.app.outbox import describe
from nanobot_api.app.wiring.storage import Storage
from nanobot_api.domain.delivery_attempts import ATTEMPTS_KEPT, DeliveryAttempt, unrecorded
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.outbox import OutboxEvent, OutboxStatus
from nanobot_api.domain.ports import OutboxAdmin
from nanobot_api.domain.text import printable, shorten

EXIT_OK = 0
_PREVIEW_CHARS = 60


async def list_events(
    admin: OutboxAdmin,
    status: OutboxStatus | None,
    out: TextIO,
    now: float,
    *,
    attempts: bool = False,
) -> int:
    """One line per event, oldest first: id, state, address, attempts, time, text; with
    ``attempts``, each event's recorded attempts below it."""
    events = await admin.events(status)
    if not events:
        out.write(f"No {status} events in the outbox.\n" if status else "The outbox is empty.\n")
        return EXIT_OK
    for event in events:
        out.write(format_event(event, now) + "\n")
        if attempts:
            out.writelines(line + "\n" for line in format_attempts(event))
    return EXIT_OK


async def show_event(admin: OutboxAdmin, event_id: str, out: TextIO, now: float) -> int:
    """The event's line, then one line per recorded attempt, oldest first."""
    event = await admin.event(event_id)
    out.write(format_event(event, now) + "\n")
    lines = format_attempts(event)
    out.writelines(line + "\n" for line in lines or ["  no attempts yet"])
    return EXIT_OK


async def retry_event(
    admin: OutboxAdmin, event_id: str, out: TextIO, now: float, *, force: bool = False
) -> int:
    """Makes the event pending and due now with a fresh budget of attempts (those made so
    far stay counted); a delivered event only with ``force``; never one a worker is
    delivering right now (RetryLater: one line, exit code 2)."""
    event = await admin.retry(event_id, now, force=force)
    out.write(
        f"Event {event.id} to {event.address} is pending again; a running server with "
        f"{event.channel} enabled delivers it within seconds.\n"
    )
    return EXIT_OK


async def drop_event(admin: OutboxAdmin, event_id: str, out: TextIO) -> int:
    """Deletes the event for good."""
    event = await admin.drop(event_id)
    out.write(f"Dropped event {event.id} to {event.address} ({event.status}).\n")
    return EXIT_OK


def format_event(event: OutboxEvent, now: float) -> str:
    """An event on one line; its text shortened, its last error (if any) at the end."""
    created = datetime.datetime.fromtimestamp(event.created_at, datetime.UTC)
    text = shorten(" ".join(event.content.split()), _PREVIEW_CHARS)
    media = (
        f" +{len(event.media)} file{'s' if len(event.media) != 1 else ''}" if event.media else ""
    )
    line = (
        f"{printable(event.id)}  {describe(event, now)}  {printable(event.address)}  "
        f"attempts={event.attempts}  {created:%Y-%m-%d %H:%M:%SZ}  {text!r}{media}"
    )
    if event.last_error and event.status != "delivered":
        line += f"  last error: {printable(event.last_error)}"
    return line


def format_attempts(event: OutboxEvent) -> list[str]:
    """The event's attempts, one indented line each, oldest first; a line first for
    the earlier attempts that have no record."""
    lines = []
    missing = unrecorded(event.attempt_log, event.attempts)
    if missing:
        which = "attempt 1" if missing == 1 else f"attempts 1-{missing}"
        lines.append(f"  {which}: not on record (an event keeps its last {ATTEMPTS_KEPT})")
    lines.extend(format_attempt(attempt) for attempt in event.attempt_log)
    return lines


def format_attempt(attempt: DeliveryAttempt) -> str:
    """``attempt N  <start>  <worker>  <outcome>``, every text escaped for a terminal."""
    started = datetime.datetime.fromtimestamp(attempt.started_at, datetime.UTC)
    worker = f"  {printable(attempt.worker)}" if attempt.worker is not None else ""
    took = attempt.seconds()
    after = f" after {took:.2f}s" if took is not None else ""
    outcome = {
        "delivered": f"delivered{after}",
        "failed": f"failed{after}: {printable(attempt.error or '')}",
        "running": "running (no outcome yet)",
        "interrupted": "interrupted: no outcome written (its process stopped or its claim ran out)",
    }[attempt.outcome]
    return f"  attempt {attempt.number}  {started:%Y-%m-%d %H:%M:%SZ}{worker}  {outcome}"


def run_outbox_command(command: OutboxCommand, storage: Storage, out: TextIO = sys.stdout) -> int:
    """Runs ``command`` against the outbox of ``storage``; returns the exit code."""
    return anyio.run(_run, command, storage, out)


async def _run(command: OutboxCommand, storage: Storage, out: TextIO) -> int:
    now = datetime.datetime.now(datetime.UTC).timestamp()
    async with storage.opened():
        outbox = storage.outbox
        match command.action:
            case "list":
                return await list_events(
                    outbox, command.status, out, now, attempts=command.attempts
                )
            case "show":
                return await show_event(outbox, command.event_id or "", out, now)
            case "retry":
                return await retry_event(
                    outbox, command.event_id or "", out, now, force=command.force
                )
            case "drop":
                return await drop_event(outbox, command.event_id or "", out)


def without_outbox(command: OutboxCommand, out: TextIO) -> int:
    """What ``command`` says when the workspace has no outbox file: nothing was ever queued."""
    if command.action == "list":
        out.write(
            f"No {command.status} events in the outbox.\n"
            if command.status
            else "The outbox is empty.\n"
        )
        return EXIT_OK
    raise NotFound(f"No outbox event with id {command.event_id!r}", param="id")
