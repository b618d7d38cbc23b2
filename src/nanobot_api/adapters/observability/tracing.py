"""Optional OpenTelemetry traces (``pip install nanobot-api[otel]``).

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set and the extra
installed, each request is one trace: the HTTP request, its turn, the turn's model
calls and tool steps and its commit to the store, each span tagged with the request
id; channel deliveries are traces of their own. Otherwise :func:`span` is a no-op
that costs one attribute read, and nothing of OpenTelemetry is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final

from nanobot_api.adapters.observability.logs import request_id_var

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_SERVICE: Final = "nanobot-api"


class _Tracing:
    tracer: Any = None
    provider: Any = None


_state = _Tracing()


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def start_tracing(environ: Mapping[str, str] | None = None) -> str | None:
    """Starts exporting traces if an OTLP endpoint is set; returns a start-up line
    saying so (or why not), None when no endpoint is set."""
    env = os.environ if environ is None else environ
    if not tracing_wanted(env):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return "OTLP endpoint set but OpenTelemetry is not installed: pip install nanobot-api[otel]"
    provider = TracerProvider(resource=Resource.create({"service.name": _SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.provider = provider
    _state.tracer = trace.get_tracer("nanobot_api")
    where = next(env[name] for name in ENDPOINT_VARIABLES if env.get(name))
    return f"traces: OpenTelemetry to {where}"


def stop_tracing() -> None:
    """Sends the spans still buffered, and stops."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


# What span gives when tracing is off: one shared do-nothing block, not a generator
# made and run for each of a turn's spans (four a turn).
_OFF: Final[contextlib.AbstractContextManager[None]] = contextlib.nullcontext()


def span(name: str, **attributes: str | int | float) -> contextlib.AbstractContextManager[None]:
    """A span around the block, a child of the current one, tagged with the request id
    (a no-op when tracing is off). An exception leaving the block marks it failed."""
    tracer = _state.tracer
    if tracer is None:
        return _OFF
    return _span(tracer, name, attributes)


@contextlib.contextmanager
def _span(tracer: Any, name: str, attributes: dict[str, str | int | float]) -> Iterator[None]:
    request_id = request_id_var.get()
    if request_id is not None:
        attributes["nanobot.request_id"] = request_id
    with tracer.start_as_current_span(name, attributes=attributes):
        yield
