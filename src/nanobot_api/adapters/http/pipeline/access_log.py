"""Stage 2: one access line per request, the request metrics, and its trace span.

It comes right after the request id and before error rendering, so it sees the status
of whatever answer the request got, errors included. While the request runs, a
RequestFacts gathers the turn's model time and tokens for the line.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from nanobot_api.adapters.http.headers import SESSION_HEADER
from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.adapters.observability import tracing
from nanobot_api.adapters.observability.logs import ACCESS_LOGGER, RequestFacts, request_facts_var
from nanobot_api.adapters.observability.metrics import Metrics

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

log = logging.getLogger(ACCESS_LOGGER)
_SESSION: Final = SESSION_HEADER.lower().encode()
# Collections whose items have ids in their paths: a metric names the pattern, so a
# client cannot make a series per made-up path.
_COLLECTIONS: Final = frozenset({"models", "responses", "conversations"})
# No answer at all: the client left first (nginx's convention).
CLIENT_GONE = 499


def route_of(path: str, status: int) -> str:
    """The route label of a request: its path for a fixed route, ``/v1/<collection>/{id}``
    (and ``/...`` below it) for an item, ``unmatched`` for whatever got a 404."""
    if status == 404:
        return "unmatched"
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "v1" and parts[2] in _COLLECTIONS:
        return "/".join([*parts[:3], "{id}", *(["..."] if len(parts) > 4 else [])])
    return path


class AccessLogStage:
    """Logs ``METHOD path status duration`` with the session, model time and tokens
    once the answer is sent (the request id is on every line of the request), counts
    it in the metrics and, with tracing on, wraps it in a span."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        started = time.monotonic()
        facts = RequestFacts()
        token = request_facts_var.set(facts)
        try:
            with tracing.span(f"{exchange.method} {route_of(exchange.path, 0)}"):
                await call_next(exchange)
        finally:
            request_facts_var.reset(token)
            status = CLIENT_GONE if exchange.status is None else exchange.status
            self._record(exchange, status, time.monotonic() - started, facts)

    def _record(self, exchange: Exchange, status: int, seconds: float, facts: RequestFacts) -> None:
        if self._metrics is not None:
            self._metrics.request_answered(
                route_of(exchange.path, status), exchange.method, status, seconds
            )
        # The line's fields are built only when the line is written (not at WARNING).
        if not log.isEnabledFor(logging.INFO):
            return
        session = next(
            (v.decode("latin-1") for k, v in exchange.response_headers if k == _SESSION), "-"
        )
        fields = {
            "method": exchange.method,
            "path": exchange.path,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "session": session,
            "model_ms": round(facts.model_s * 1000, 1),
            "tokens": facts.tokens,
        }
        log.info(
            "%s %s %d %.1fms session=%s model=%.1fms tokens=%d",
            exchange.method,
            exchange.path,
            status,
            seconds * 1000,
            session,
            facts.model_s * 1000,
            facts.tokens,
            extra={"fields": fields},
        )
