"""Secrets are masked in every log record made while a server runs, whichever handler
writes it: one on a logger that does not propagate, one added after the start."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from nanobot_api.adapters.observability.logs import JsonFormatter
from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.redaction import redacted_logs
from nanobot_api.domain.redaction import Redactor

SECRET = "sk-secret-0123456789"
OTHER = "xoxb-other-0123456789"


@pytest.fixture(name="lonely")
def _lonely() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with its own handler that does not reach the root's."""
    logger = logging.getLogger("tests.redacted_logs.lonely")
    logger.propagate = False
    yield logger, io.StringIO()
    for added in list(logger.handlers):
        logger.removeHandler(added)


def _fail() -> None:
    raise ValueError(f"token {SECRET}")


def test_a_handler_added_later_on_a_logger_of_its_own_writes_no_secret(
    lonely: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, written = lonely
    before = logging.getLogRecordFactory()
    with redacted_logs(Redactor.of([SECRET])):
        logger.addHandler(logging.StreamHandler(written))  # after the "start"
        as_json = logging.StreamHandler(written)
        as_json.setFormatter(JsonFormatter())
        logger.addHandler(as_json)
        logger.warning("key %s", SECRET)
        logger.warning("two %s %s", SECRET)  # noqa: PLE1206 - a bad format must not raise
        try:
            _fail()
        except ValueError:
            logger.exception("failed")
    text = written.getvalue()
    assert SECRET not in text
    assert "key ***" in text
    assert "ValueError: token ***" in text
    (entry,) = [json.loads(line) for line in text.splitlines() if '"exc_info"' in line]
    assert entry["exc_info"].endswith("ValueError: token ***")  # the JSON lines keep it
    assert logging.getLogRecordFactory() is before


def test_servers_ending_in_any_order_leave_the_factory_as_it_was() -> None:
    before = logging.getLogRecordFactory()
    first = redacted_logs(Redactor.of([SECRET]))
    second = redacted_logs(Redactor.of([OTHER]))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    record = logging.getLogger("tests").makeRecord("t", 30, "f", 1, f"{SECRET} {OTHER}", (), None)
    assert record.getMessage() == f"{SECRET} ***"  # the first server's secrets are its own
    second.__exit__(None, None, None)
    assert logging.getLogRecordFactory() is before


async def test_what_a_part_logs_while_the_server_stops_is_masked_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ProviderConfig(api_base="http://127.0.0.1:9/v1", api_key=SECRET)
    config = attrs.evolve(
        Config(),
        agents=AgentsConfig(AgentDefaults(provider="local", model="m")),
        providers={"local": provider},
        workspace=tmp_path,
    )
    app = build(config)
    stopping = logging.getLogger("tests.redacted_logs.stopping")

    # As a channel or an MCP server added after the app was built says goodbye.
    @app.after_serving
    async def _goodbye() -> None:
        stopping.warning("closing with key %s", SECRET)

    caplog.set_level(logging.WARNING)
    await app.startup()
    await app.shutdown()
    assert "closing with key ***" in caplog.text
    assert SECRET not in caplog.text
