"""Log lines: text or JSON, each about a request carrying its id, client text escaped.

The request id lives in a context variable set by the HTTP pipeline for the request's
task (and so for the turn it runs, which runs in that task); every record logged while
it is set carries it, whichever module logs. A message is escaped (``printable``) in
the text format, so a newline in a session id or a model-chosen chat id cannot forge a
line; the JSON format's encoder escapes it anyway.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Mapping
from typing import Final, Literal, TextIO

import attrs

from nanobot_api.domain.text import printable

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")

# The package's loggers; -v shows their debug lines (model calls, tool steps) only,
# not those of every library underneath.
PACKAGE_LOGGER: Final = "nanobot_api"
ACCESS_LOGGER: Final = "nanobot_api.access"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nanobot_request_id", default=None
)


@attrs.define
class RequestFacts:
    """What a request's access line says beyond its HTTP side, gathered while it runs."""

    model_s: float = 0.0
    tokens: int = 0


request_facts_var: contextvars.ContextVar[RequestFacts | None] = contextvars.ContextVar(
    "nanobot_request_facts", default=None
)

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the task that logs it ("-" if none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL [request id] logger: message``, the message's control characters
    escaped; a traceback (the server's own text) is kept as it is."""

    def __init__(self) -> None:
        # The default covers a handler set up by an embedding program, without our filter.
        super().__init__(_TEXT_FORMAT, defaults={"request_id": "-"})

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, and an
    access line's fields (``record.fields``) at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        # A record whose secrets were masked carries its traceback as text only.
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        elif record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    log_format: LogFormat = "text", *, verbose: bool = False, stream: TextIO | None = None
) -> None:
    """Sends log records to ``stream`` (stderr) in ``log_format``; INFO and up, and the
    package's DEBUG lines too when ``verbose``.

    Like ``logging.basicConfig``, does nothing when the program has configured the root
    logger already (an embedding program keeps its own set-up).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.DEBUG if verbose else logging.NOTSET)
