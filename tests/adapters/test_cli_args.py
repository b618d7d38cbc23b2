from __future__ import annotations

from pathlib import Path

import pytest

from nanobot_api.adapters.cli.args import (
    OutboxCommand,
    ServeCommand,
    SessionsCommand,
    UsageError,
    parse_args,
)


def usage_error(argv: list[str]) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    assert "\n" not in str(info.value)
    return info.value


def test_serve_alone_leaves_everything_to_the_config() -> None:
    assert parse_args(["serve"]) == ServeCommand()


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "-H", "0.0.0.0", "-p", "9000", "-t", "2.5", "-c", "c.json", "-w", "ws", "-v"],
        [
            "serve",
            "--host=0.0.0.0",
            "--port",
            "9000",
            "--timeout",
            "2.5",
            "--config",
            "c.json",
            "--workspace",
            "ws",
            "--verbose",
        ],
    ],
)
def test_serve_takes_short_and_long_flags(argv: list[str]) -> None:
    assert parse_args(argv) == ServeCommand(
        config=Path("c.json"),
        workspace=Path("ws"),
        host="0.0.0.0",
        port=9000,
        timeout=2.5,
        verbose=True,
    )


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["sessions", "list"], SessionsCommand(action="list")),
        (["sessions", "show", "api:default"], SessionsCommand(action="show", key="api:default")),
        (
            ["sessions", "show", "api:x", "--all"],
            SessionsCommand(action="show", key="api:x", all=True),
        ),
        (
            ["sessions", "clear", "api:x", "-c", "c.json", "-w", "ws"],
            SessionsCommand(
                action="clear", key="api:x", config=Path("c.json"), workspace=Path("ws")
            ),
        ),
        (
            ["sessions", "-c", "c.json", "list"],
            SessionsCommand(action="list", config=Path("c.json")),
        ),
    ],
)
def test_sessions_subcommands_parse(argv: list[str], command: SessionsCommand) -> None:
    assert parse_args(argv) == command


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["outbox", "list"], OutboxCommand(action="list")),
        (
            ["outbox", "list", "--status", "failed"],
            OutboxCommand(action="list", status="failed"),
        ),
        (["outbox", "retry", "evt-1"], OutboxCommand(action="retry", event_id="evt-1")),
        (["outbox", "show", "evt-1"], OutboxCommand(action="show", event_id="evt-1")),
        (["outbox", "list", "--attempts"], OutboxCommand(action="list", attempts=True)),
        (
            ["outbox", "drop", "evt-2", "-w", "ws"],
            OutboxCommand(action="drop", event_id="evt-2", workspace=Path("ws")),
        ),
    ],
)
def test_outbox_subcommands_parse(argv: list[str], command: OutboxCommand) -> None:
    assert parse_args(argv) == command


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", '--port: expected an integer 0-65535, got "abc"'),
        ("-1", '--port: expected an integer 0-65535, got "-1"'),
        ("65536", '--port: expected an integer 0-65535, got "65536"'),
        ("80.5", '--port: expected an integer 0-65535, got "80.5"'),
    ],
)
def test_a_bad_port_is_one_line(value: str, message: str) -> None:
    assert str(usage_error(["serve", "-p", value])) == message


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_timeout_is_one_line(value: str) -> None:
    assert str(usage_error(["serve", "--timeout", value])) == (
        f'--timeout: expected a number > 0, got "{value}"'
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["serve", "--bogus"],
        ["serve", "--port"],
        ["sessions"],
        ["sessions", "show"],
        ["outbox", "retry"],
        ["outbox", "show"],
        ["outbox", "list", "--status", "lost"],
    ],
)
def test_usage_mistakes_raise_instead_of_exiting(argv: list[str]) -> None:
    assert str(usage_error(argv)).startswith("nanobot")


def test_help_still_prints_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["serve", "--help"])

    assert info.value.code == 0
    assert "--workspace" in capsys.readouterr().out
