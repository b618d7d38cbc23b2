"""Starting `nanobot serve` and the library's serve(): what it says, and how it fails.

Every start-up failure is one line on stderr and exit status 2, never a traceback;
"listening" is said only once the socket is bound and the stores are open.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from nanobot_api.app.wiring.responses import check_responses_file

NANOBOT = [sys.executable, "-m", "nanobot_api.main"]
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("NANOBOT_CONFIG", None)
    return env


def _refused(args: list[str], home: Path) -> str:
    """Runs a start-up that must fail; its one stderr line."""
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=30, env=_env(home), check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("nanobot: ")
    return line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _library_serve(port: int, workspace: Path, storage_url: str = "") -> list[str]:
    script = textwrap.dedent(
        f"""
        from pathlib import Path

        from nanobot_api import serve
        from nanobot_api.app.config import Config, StorageConfig

        async def shout(turn):
            return turn.text.upper()

        storage = StorageConfig(url={storage_url!r}, connect_retry_s=0.5)
        config = Config(storage=storage, workspace=Path({str(workspace)!r}))
        serve(shout, port={port}, config=config)
        """
    )
    return [sys.executable, "-c", script]


def test_a_busy_port_is_one_line_and_exit_2_from_the_cli_and_the_library(tmp_path: Path) -> None:
    with _busy_port() as port:
        cli = _refused([*NANOBOT, "serve", "--port", str(port)], tmp_path)
        library = _refused(_library_serve(port, tmp_path / "ws"), tmp_path)
    for line in (cli, library):
        assert f"127.0.0.1:{port}" in line
        assert "in use" in line
        assert "--port" in line


# Root drops the capability to bind ports below net.ipv4.ip_unprivileged_port_start
# and keeps every other privilege (its interpreter may sit under a /root that `nobody`
# cannot enter); the kernel refuses the bind with the EACCES an unprivileged user gets.
_WITHOUT_BIND_SERVICE = textwrap.dedent(
    """
    import ctypes, os, sys
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        # PR_CAPBSET_DROP (24) of CAP_NET_BIND_SERVICE (10): root's exec no longer gets it.
        if libc.prctl(24, 10, 0, 0, 0) != 0:
            sys.exit(f"cannot drop CAP_NET_BIND_SERVICE: {os.strerror(ctypes.get_errno())}")
        status = open("/proc/self/status").read()
        inheritable = int(status.split("CapInh:")[1].split()[0], 16)
        if inheritable & 1 << 10:  # an inheritable one would come back on exec
            sys.exit("CAP_NET_BIND_SERVICE is inheritable here; cannot run without it")
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    """
)


def _unprivileged(args: list[str]) -> list[str]:
    """``args`` (``[sys.executable, ...]``) run without the privilege to bind low ports."""
    return [sys.executable, "-c", _WITHOUT_BIND_SERVICE, *args[1:]]


def _privileged_port() -> int:
    """A port only a privileged process may bind on this machine."""
    setting = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    start = int(setting.read_text())
    assert start > 1, (
        f"{setting} is {start} here: any user may bind any port, so no bind is ever "
        "refused; run the tests with net.ipv4.ip_unprivileged_port_start=1024 (the "
        "kernel's default; Docker sets 0 unless given --sysctl)"
    )
    return min(start, 1024) - 1


def test_a_port_this_user_may_not_bind_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """As a user without the privilege (as root: without CAP_NET_BIND_SERVICE)."""
    port = _privileged_port()
    workspace = tmp_path / "ws"
    for args in (
        [*NANOBOT, "serve", "--port", str(port), "-w", str(workspace)],
        _library_serve(port, workspace),
    ):
        line = _refused(_unprivileged(args), tmp_path)
        assert f"cannot bind 127.0.0.1:{port}: no permission" in line
        assert "choose a port above 1023 with --port" in line


@pytest.mark.parametrize(
    ("store", "workers"),
    [
        ("sessions", "1"),
        ("responses", "1"),
        ("responses", "2"),
        ("requests", "1"),
        ("requests", "2"),
    ],
)
def test_a_corrupt_store_file_is_one_line_and_exit_2(
    tmp_path: Path, store: str, workers: str
) -> None:
    """Found at start-up (the responses and requests files too, when they exist), not
    by a request."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / f"{store}.sqlite3").write_bytes(b"not a database, " * 512)
    line = _refused(
        [
            *NANOBOT,
            "serve",
            "--port",
            str(_free_port()),
            "-w",
            str(workspace),
            "--workers",
            workers,
        ],
        tmp_path,
    )
    assert store in line
    assert "not a readable SQLite database" in line
    assert "backup" in line


def test_a_corrupt_store_or_a_database_never_up_is_one_line_from_the_library_too(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "sessions.sqlite3").write_bytes(b"not a database, " * 512)
    line = _refused(_library_serve(_free_port(), workspace), tmp_path)
    assert "sessions" in line
    assert "not a readable SQLite database" in line
    url = f"postgresql://nanobot:s3cretpass@127.0.0.1:{_free_port()}/nanobot"
    line = _refused(_library_serve(_free_port(), tmp_path / "ws2", url), tmp_path)
    assert "cannot reach the database 127.0.0.1" in line
    assert "s3cretpass" not in line


def test_a_workspace_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Root may write anywhere, so the workspace lies under a file (a read-only mount
    # is refused the same way).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    workspace = blocker / "ws"
    for args in (
        [*NANOBOT, "serve", "--port", str(_free_port()), "-w", str(workspace)],
        _library_serve(_free_port(), workspace),
    ):
        line = _refused(args, tmp_path)
        assert f"workspace {workspace} cannot be written" in line
        assert "--workspace" in line


def test_the_start_up_lines_name_model_provider_storage_workers_and_listen_once_bound(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        '{"providers": {"custom": {"apiBase": "http://127.0.0.1:9/v1", "apiKey": "sk-secret-1"}},'
        ' "agents": {"defaults": {"model": "tiny-model"}}}'
    )
    server = subprocess.Popen(
        [*NANOBOT, "serve", "-p", str(_free_port()), "-c", str(config), "-w", str(tmp_path / "ws")],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    assert server.stderr is not None
    lines: list[str] = []
    try:
        while not lines or "listening on" not in lines[-1]:
            line = server.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = lines[-1].split("listening on ", 1)[1].split()[0]
        # Said only once bound: the very next request is answered.
        assert requests.get(url.removesuffix("/v1") + "/health", timeout=5).ok
    finally:
        server.terminate()
        rest = server.communicate(timeout=30)[1]
    said = "".join(lines)
    assert "model tiny-model at http://127.0.0.1:9/v1 (provider custom)" in said
    assert "storage: SQLite in" in said
    assert "1 worker" in said
    assert "sk-secret-1" not in said + rest
    assert "Running on" not in said + rest  # Hypercorn's own line would say it again
    assert server.returncode == 0
    # Nothing asked for responses: no file of theirs (it is made on first use).
    assert not (tmp_path / "ws" / "responses.sqlite3").exists()


async def test_the_workers_parent_checks_the_responses_file_without_making_it(
    tmp_path: Path,
) -> None:
    """``serve --workers`` checks an existing responses.sqlite3 before its workers
    start; a server whose clients never used the Responses API still has none."""
    await check_responses_file(tmp_path)
    assert not (tmp_path / "responses.sqlite3").exists()
