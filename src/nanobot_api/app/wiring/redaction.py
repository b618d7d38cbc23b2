"""Which configured values are secrets, and keeping them out of the server's logs.

:func:`configured_redactor` is the one place that lists every secret of a
configuration; everything that leaves the process (answers, stream events, error
bodies, log lines, stored delivery errors) is passed through the Redactor it returns.
A new kind of secret (an MCP server's environment or headers, a tenant key) is added
here and is then masked everywhere at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nanobot_api.app.config import Config
from nanobot_api.app.mcp_config import mcp_secrets
from nanobot_api.app.wiring.channels import channel_secrets
from nanobot_api.domain.redaction import Redactor


def configured_redactor(config: Config) -> Redactor:
    """Every secret in ``config``: the server's API keys, every provider's API key and
    every value of its extra headers (Azure's ``api-key`` lives there), every channel
    token, the webhook's URL and signing secret, long plugin settings, and every MCP
    server's ``env`` and ``headers`` value."""
    values: list[str] = [config.api.api_key, *(tenant.key for tenant in config.api.keys)]
    for provider in config.providers.values():
        values.append(provider.api_key)
        values += provider.extra_headers.values()
    values += channel_secrets(config.channels)
    values += mcp_secrets(config.tools)
    return Redactor.of(values)


def mask_record(record: logging.LogRecord, redactor: Redactor) -> None:
    """Masks every secret in a record's message, traceback and stack text, in place."""
    try:
        message = record.getMessage()
    except Exception:
        # A handler would report it with the raw arguments: show them masked instead.
        message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg, record.args = message, None
    clean = redactor(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # An exception's text (a URL with a token in it) is part of the line too.
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redactor(record.exc_text)
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redactor(record.stack_info)


_FORMATTER = logging.Formatter()
# The secrets of every app serving in this process (tests run several at once), and
# the record factory that was in place before the first of them started.
_serving: tuple[Redactor, ...] = ()
_plain_factory: Callable[..., logging.LogRecord] | None = None


def _masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _plain_factory is not None
    record = _plain_factory(*args, **kwargs)
    for redactor in _serving:
        mask_record(record, redactor)
    return record


@contextmanager
def redacted_logs(redactor: Redactor) -> Iterator[None]:
    """Masks ``redactor``'s secrets in every log record made while the block runs (a
    server's life); nothing is added when there is no secret.

    Records are masked as they are made (a record factory), not by a filter on some
    handlers: every handler sees them masked, the root's, a logger's own that does not
    propagate, and one added after the server started.
    """
    global _serving, _plain_factory  # noqa: PLW0603 - one factory per process
    if not redactor:
        yield
        return
    if not _serving:
        _plain_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_masked_record)
    _serving = (*_serving, redactor)
    try:
        yield
    finally:
        index = _serving.index(redactor)
        _serving = _serving[:index] + _serving[index + 1 :]
        if not _serving and logging.getLogRecordFactory() is _masked_record:
            assert _plain_factory is not None
            logging.setLogRecordFactory(_plain_factory)
