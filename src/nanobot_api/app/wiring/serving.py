"""`nanobot serve` and the library's ``serve()``: start-up checks, then serve until stopped.

Start-up runs in an order where each failure is one line (StartupFailed) rather than a
traceback: the workspace is made and proven writable, the socket is bound (a busy port
fails here), the stores are opened (a corrupt file fails here), and only then does the
server start and say "listening".
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TextIO

import anyio
from quart import Quart

from nanobot_api.adapters.http.serve import serve_app
from nanobot_api.adapters.observability.logs import LogFormat, configure_logging
from nanobot_api.adapters.observability.metrics import multiprocess_metrics, worker_exited
from nanobot_api.adapters.observability.tracing import start_tracing, stop_tracing
from nanobot_api.adapters.startup import bind_socket, check_workspace, explain_open_failure
from nanobot_api.adapters.storage.postgres_db import describe_url
from nanobot_api.adapters.storage.sqlite_responses import responses_path
from nanobot_api.app.config import ApiConfig, Config
from nanobot_api.app.drain import TurnGate
from nanobot_api.app.echo import ECHO_MODEL
from nanobot_api.app.wiring.bootstrap import build, session_store_path
from nanobot_api.app.wiring.lifecycle import gate_of, openers
from nanobot_api.app.wiring.responses import check_responses_file
from nanobot_api.app.wiring.storage import storage_for
from nanobot_api.app.wiring.workers import FROM_PARENT, early_stops, run_workers

log = logging.getLogger(__name__)


def startup_lines(config: Config, model: str, *, custom_agent: bool = False) -> list[str]:
    """What is served with what: the model and its provider's URL (never its key), the
    storage, the workers. The echo agent is announced loudly."""
    provider = config.provider
    if custom_agent:
        lines = [f"model {model} (the agent given to serve())"]
    elif provider is None:
        lines = [
            f"NO MODEL PROVIDER CONFIGURED - serving the offline echo agent (model "
            f"{ECHO_MODEL}). Add providers.<name> to the config to use a model."
        ]
    else:
        name, settings = provider
        lines = [f"model {model} at {settings.api_base} (provider {name})"]
    if config.storage.url:
        where = f"PostgreSQL at {describe_url(config.storage.url)}"
    else:
        where = f"SQLite in {config.workspace} ({session_store_path(config).name})"
    workers = config.api.workers
    lines.append(f"storage: {where}; {workers} worker{'s' if workers != 1 else ''}")
    return lines


def api_url(api: ApiConfig, port: int | None = None) -> str:
    host = f"[{api.host}]" if ":" in api.host else api.host
    return f"http://{host}:{api.port if port is None else port}/v1"


def log_to_stderr(*, verbose: bool = False, log_format: LogFormat = "text") -> None:
    """Log lines on stderr, unless the program has set up logging already."""
    configure_logging(log_format, verbose=verbose)


def run_server(config: Config, *, verbose: bool = False) -> int:
    """Serves until SIGINT or SIGTERM; returns the exit code. Raises StartupFailed (or
    ConfigError) when the server cannot start."""
    log_to_stderr(verbose=verbose, log_format=config.api.log_format)
    lines = startup_lines(config, app_model(config))
    if config.api.workers > 1:
        return serve_workers(config, lines)
    app = build(config)
    serve_until_stopped(app, config, lines, restore_signals=False)  # quiet until exit
    return 0


def serve_workers(config: Config, lines: list[str], out: TextIO | None = None) -> int:
    """``api.workers`` processes on one port (see ``app/wiring/workers.py``): the parent checks
    the workspace, binds the port and opens the storage once (migrating it), so each of
    these failures is still one line; then every worker builds its own app and serves.
    Returns the exit code."""
    stream = out or sys.stderr
    check_workspace(config.workspace)
    sock = bind_socket(config.api.host, config.api.port)
    try:
        anyio.run(_open_storage_once, config)
    except BaseException:
        sock.close()
        raise

    def serve_one(number: int) -> None:
        app = build(config)
        with _collecting_less_often():
            # Only the first worker says what is served where.
            said = lines if number == 0 else []
            serving = partial(_serve, app, config, said, sock, stream, from_parent=FROM_PARENT)
            anyio.run(serving, backend="asyncio")

    # The workers' metrics are summed from files in one folder (see metrics.py).
    with multiprocess_metrics():
        return run_workers(config.api.workers, sock, serve_one, on_exit=worker_exited)


async def _open_storage_once(config: Config) -> None:
    storage = storage_for(config)
    with _one_line_if_known(storage.kind, storage.path):
        await storage.open(retry_for_s=config.storage.connect_retry_s)
    try:
        # The workers would each fail on a corrupt file, with a traceback.
        for file in storage.made_on_first_use:
            with _one_line_if_known(file.path.stem, file.path):
                await file.open_if_present()
        if storage.database is None:
            with _one_line_if_known("responses", responses_path(config.workspace)):
                await check_responses_file(config.workspace)
    finally:
        await storage.close()


@contextmanager
def _one_line_if_known(what: str, path: Path | None) -> Iterator[None]:
    """Turns a store's open failure that an operator can fix into StartupFailed."""
    try:
        yield
    except Exception as exc:
        failure = explain_open_failure(exc, what, path)
        if failure is None:
            raise
        raise failure from None


def app_model(config: Config) -> str:
    return ECHO_MODEL if config.provider is None else config.model


def serve_until_stopped(
    app: Quart,
    config: Config,
    lines: list[str],
    out: TextIO | None = None,
    *,
    restore_signals: bool = True,
) -> None:
    """Checks the workspace, binds ``api.host:api.port``, opens the stores, prints
    ``lines`` and "listening on <url>", and serves ``app`` until SIGINT or SIGTERM.

    Raises StartupFailed, with nothing served, for a workspace that cannot be written, a
    port that cannot be bound or a store that cannot be opened. With ``restore_signals``
    the program's own SIGTERM and SIGINT handlers are back on return, else both are
    ignored from then on (the process is about to exit).
    """
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stream = out or sys.stderr
    check_workspace(config.workspace)
    sock = bind_socket(config.api.host, config.api.port)
    traces = start_tracing()
    try:
        with _collecting_less_often():
            lines = lines if traces is None else [*lines, traces]
            anyio.run(partial(_serve, app, config, lines, sock, stream), backend="asyncio")
    finally:
        sock.close()  # a no-op once Hypercorn has taken it over
        stop_tracing()
        for signum, handler in previous.items():
            # Else ignored up to the exit: Python's finalization would put back the
            # default handlers of any handler of ours, reopening a 143/130 window.
            signal.signal(signum, handler if restore_signals and handler else signal.SIG_IGN)


async def _serve(
    app: Quart,
    config: Config,
    lines: list[str],
    sock: socket.socket,
    out: TextIO,
    *,
    from_parent: signal.Signals | None = None,
) -> None:
    for opener in openers(app):
        with _one_line_if_known(opener.what, opener.path):
            await opener.open()
    port = int(sock.getsockname()[1])
    listening = [*lines, f"listening on {api_url(config.api, port)}"]
    if config.api.chat_page:
        listening.append(f"chat in the browser at {api_url(config.api, port).removesuffix('v1')}")

    @app.before_serving
    async def _announce() -> None:
        # Registered last, so said once every other start-up step has succeeded.
        if lines:
            say(listening, out, config.api.log_format)

    stop = anyio.Event()
    served = anyio.Event()
    signals = (signal.SIGTERM, signal.SIGINT, *([] if from_parent is None else [from_parent]))
    async with anyio.create_task_group() as watching:
        watching.start_soon(
            _stop_on_signals, gate_of(app), config.api.shutdown_grace_s, stop, served, signals
        )
        try:
            await serve_app(app, sock=sock, shutdown_trigger=stop.wait)
        finally:
            stop.set()
            served.set()  # ends the watch
    log.info("stopped")


@contextmanager
def _quiet_after(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """A stop signal that comes once the server has stopped (say a second SIGTERM right
    after a quick drain) is ignored until the process exits: Python's default handler
    would turn a clean exit into 143 or 130, or kill a worker so the parent reports it
    as failed."""
    try:
        yield
    finally:
        for signum in signals:
            signal.signal(signum, _already_stopping)


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.info("%s: already stopping", signal.Signals(signum).name)


async def _stop_on_signals(
    gate: TurnGate | None,
    grace_s: float,
    stop: anyio.Event,
    served: anyio.Event,
    signals: tuple[signal.Signals, ...],
) -> None:
    """The first stop signal drains (see ``app/drain.py``) and then stops the server; a
    second one from the same source cancels the turns still running and stops at once.
    The sources are the worker's parent (``FROM_PARENT``) and everything else: under
    systemd a worker gets one SIGTERM from each, and that is still one stop. Returns once
    ``served`` is set, so a signal during Hypercorn's shutdown is still handled."""
    seen: Counter[bool] = Counter()
    async with anyio.create_task_group() as group:

        async def end_when_served() -> None:
            await served.wait()
            group.cancel_scope.cancel()

        group.start_soon(end_when_served)

        def handle(signum: int) -> None:
            name = signal.Signals(signum).name
            source = signum == FROM_PARENT
            seen[source] += 1
            if gate is None or stop.is_set():
                stop.set()
            elif gate.draining and seen[source] > 1:
                log.warning("%s again: stopping now", name)
                gate.cancel_all()
                stop.set()
            elif gate.draining:
                log.info("%s: already draining", name)  # the other source's copy
            else:
                log.info("%s: draining (up to %gs for turns in flight)", name, grace_s)
                group.start_soon(_drain_then_stop, gate, grace_s, stop)

        with _quiet_after(signals), anyio.open_signal_receiver(*signals) as received:
            for signum in early_stops():
                handle(signum)
            async for signum in received:
                handle(signum)


async def _drain_then_stop(gate: TurnGate, grace_s: float, stop: anyio.Event) -> None:
    await gate.drain(grace_s)
    stop.set()


def say(lines: list[str], out: TextIO, log_format: LogFormat) -> None:
    """Start-up lines: ``nanobot: ...`` for a person, log records in the JSON format."""
    for line in lines:
        if log_format == "json":
            log.info("%s", line)
        else:
            print(f"nanobot: {line}", file=out)
    out.flush()


@contextmanager
def _collecting_less_often() -> Iterator[None]:
    """Tunes Python's cycle collector while the server runs, and restores it after.

    A turn allocates thousands of short-lived objects, so at the default threshold (a
    young-generation pass every 700 allocations) the collector ran several times per
    turn, and its full passes walked every history message held in memory: about a
    twentieth of a busy server's time, with pauses of tens of milliseconds. Objects
    built at start-up (modules, classes, the app) are frozen out of the passes, and a
    young pass runs every 20,000 allocations; cyclic garbage is still collected. (No
    full collection before the freeze: it cost 40 ms of start-up to free a few KB.) A
    program that embeds the server gets its own settings back when it stops.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
