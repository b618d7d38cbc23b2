"""Which configured values are secrets, and keeping them out of the server's logs.

:func:`configured_redactor` is the one place that lists every secret of a
configuration; everything that leaves the process (answers, stream events, error
bodies, log lines, stored delivery errors) is passed through the Redactor it returns.
A new kind of secret (an MCP server's environment or headers, a tenant key) is added
here and is then masked everywhere at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

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


class RedactingFilter(logging.Filter):
    """A handler filter that masks every secret in a record's message and traceback.

    On a handler rather than a logger, so it sees the records of every logger that
    reaches the handler (Hypercorn's and aiohttp's included).
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._redactor
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # An exception's text (a URL with a token in it) is part of the line too.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


@contextmanager
def redacted_logs(redactor: Redactor) -> Iterator[None]:
    """Masks ``redactor``'s secrets in what the root logger's handlers write, while the
    block runs (a server's life); nothing is added when there is no secret."""
    if not redactor:
        yield
        return
    handlers = list(logging.getLogger().handlers)
    if not handlers and logging.lastResort is not None:
        handlers = [logging.lastResort]  # what writes the warnings of an unconfigured app
    guard = RedactingFilter(redactor)
    for handler in handlers:
        handler.addFilter(guard)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(guard)
