"""Runs every benchmark in turn and prints its figures (`make bench`).

Each prints its own targets beside its figures. They share this machine's two cores
with their load generators, so run them on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    ["startup.py"],
    ["echo_turns.py"],
    ["proxy_overhead.py"],
    ["inflight.py"],
    ["http_servers.py"],
    ["store_cost.py"],
    ["whole_conversation.py"],
    ["uploads.py"],
    ["outbox.py"],
    ["upstream_clients.py"],
    ["postgres_drivers.py"],
    ["scale_out.py"],
]


def main() -> int:
    failed = []
    for script, *args in BENCHMARKS:
        print(f"\n== {script} {' '.join(args)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
