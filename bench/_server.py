"""Starting `nanobot serve` as a separate process for benchmarks."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, timeout_s: float = 20.0) -> float:
    """Seconds until /health first answers 200."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # still starting
            time.sleep(0.005)
    raise RuntimeError("server did not become healthy")


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Returns once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return


@contextmanager
def nanobot_server(
    config: dict[str, object] | None = None,
    *,
    command: list[str] | None = None,
) -> Iterator[tuple[int, subprocess.Popen[bytes], float]]:
    """A `nanobot serve` process on a free port; yields (port, process, seconds to healthy).
    ``command`` replaces ``python -m nanobot_api.main`` (bench/http_servers.py)."""
    with tempfile.TemporaryDirectory() as home:
        config_path = Path(home) / "config.json"
        config_path.write_text(json.dumps(config or {}))
        port = free_port()
        env = {**os.environ, "HOME": home}
        start = time.perf_counter()
        process = subprocess.Popen(
            [
                *(command or [sys.executable, "-m", "nanobot_api.main"]),
                "serve",
                "-c",
                str(config_path),
                "-p",
                str(port),
                "-w",
                f"{home}/ws",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(port)
            yield port, process, time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=15)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99
