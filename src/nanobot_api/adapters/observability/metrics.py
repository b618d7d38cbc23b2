"""``GET /metrics``: Prometheus text from ``prometheus-client``.

Each app has its own registry (tests build many apps in one process). Under
``--workers`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` (:func:`multiprocess_metrics`)
before any worker makes its metrics; each worker then writes its values to files there,
and a scrape of any worker adds up all of them (``MultiProcessCollector``); the parent
drops a dead worker's live gauges (:func:`worker_exited`).

Labels never carry a session id, a key, a request id or any text: only routes, methods,
statuses, outcomes, channels and file kinds, so the series stay few and nothing private
leaves through them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from nanobot_api.adapters.observability import tracing
from nanobot_api.adapters.observability.logs import request_facts_var

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
# Turns and model calls take from tens of milliseconds to minutes.
_SLOW_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FAST_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Refresh = Callable[["Metrics"], Awaitable[None]]


@contextmanager
def multiprocess_metrics() -> Iterator[Path]:
    """For the ``--workers`` parent, around the workers' whole life: a folder for their
    metric files, empty at the start (values of an earlier run would be added in), with
    ``prometheus_client`` pointed at it. The operator's ``$PROMETHEUS_MULTIPROC_DIR``
    if set (emptied), else a new private temporary folder, removed at the end."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, mode=0o700)
    else:
        path = Path(tempfile.mkdtemp(prefix="nanobot-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus_client chose how to keep values when it was imported (in-process,
    # the env unset); metrics made from now on (in the workers) go to files.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        yield path
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Drops a dead worker's live gauges (turns in flight) from the sum; its counters
    and histograms stay counted, as a restart must not make totals go down."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


_Metric = TypeVar("_Metric", Counter, Histogram)


def _child(children: dict[str, _Metric], metric: _Metric, label: str) -> _Metric:
    """``metric``'s child for ``label``, looked up once (see ``request_answered``)."""
    child = children.get(label)
    if child is None:
        child = children[label] = metric.labels(label)
    return child


class Metrics:
    """Every metric of operations.md, in one registry; implements the Telemetry port
    (and adds a turn's model time and tokens to its request's access line)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nanobot_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "nanobot_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ["route"],
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "nanobot_turn_duration_seconds",
            "Time a turn ran, by outcome (ok, error, cancelled).",
            ["outcome"],
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.first_token_seconds = Histogram(
            "nanobot_turn_time_to_first_token_seconds",
            "Time from a turn's start to its first text.",
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.model_calls = Counter(
            "nanobot_model_calls",
            "Calls to the model provider, by status (ok or the error's kind).",
            ["status"],
            registry=registry,
        )
        self.model_call_seconds = Histogram(
            "nanobot_model_call_duration_seconds",
            "Time one model call took.",
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.turns_in_flight = Gauge(
            "nanobot_turns_in_flight",
            "Turns under way now (those waiting for their session's previous turn too).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.session_wait_seconds = Histogram(
            "nanobot_session_wait_seconds",
            "Time a turn waited for its session's previous turn to end.",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.outbox_events = Gauge(
            "nanobot_outbox_events",
            "Outbox events by status, at the time of the scrape.",
            ["status"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.outbox_oldest_seconds = Gauge(
            "nanobot_outbox_oldest_pending_age_seconds",
            "Age of the oldest event waiting to go out, queued or pending (0 when none).",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.uploads = Counter(
            "nanobot_uploads",
            "Files accepted, by the type detected in their bytes.",
            ["kind"],
            registry=registry,
        )
        self._refreshers: list[Refresh] = []
        # Label children looked up once each (see request_answered).
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._turn_outcomes: dict[str, Histogram] = {}
        self._model_statuses: dict[str, Counter] = {}

    # ---- Telemetry ------------------------------------------------------------------

    def turn_started(self) -> None:
        self.turns_in_flight.inc()

    def turn_ended(
        self, seconds: float, first_token_s: float | None, outcome: str, tokens: int
    ) -> None:
        facts = request_facts_var.get()
        if facts is not None:
            facts.tokens += tokens
        self.turns_in_flight.dec()
        _child(self._turn_outcomes, self.turn_seconds, outcome).observe(seconds)
        if first_token_s is not None:
            self.first_token_seconds.observe(first_token_s)

    def session_waited(self, seconds: float) -> None:
        self.session_wait_seconds.observe(seconds)

    def model_called(self, status: str, seconds: float) -> None:
        facts = request_facts_var.get()
        if facts is not None:
            facts.model_s += seconds
        _child(self._model_statuses, self.model_calls, status).inc()
        self.model_call_seconds.observe(seconds)

    def upload_accepted(self, kind: str) -> None:
        self.uploads.labels(kind).inc()

    def span(self, name: str) -> AbstractContextManager[None]:
        return tracing.span(name)

    # ---- the HTTP side --------------------------------------------------------------

    def request_answered(self, route: str, method: str, status: int, seconds: float) -> None:
        # labels() takes a lock and checks its values on every call: each child is looked
        # up once. The keys are the registry's own series, so this holds no more than it.
        key = (route, method, status)
        children = self._answered.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route),
            )
            self._answered[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def refresh_with(self, refresh: Refresh) -> None:
        """``refresh`` sets gauges read from elsewhere (the outbox) before each scrape."""
        self._refreshers.append(refresh)

    async def render(self) -> bytes:
        """The exposition text of a scrape: this process's metrics, or every worker's."""
        for refresh in self._refreshers:
            await refresh(self)
        if MULTIPROC_ENV in os.environ:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
