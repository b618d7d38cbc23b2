"""`nanobot serve` to the first 200 on /health. Target: under 1 s.

Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _server import nanobot_server


def main(runs: int = 7) -> None:
    times = []
    for _ in range(runs):
        with nanobot_server() as (_, _, seconds):
            times.append(seconds)
    print(
        f"startup to first /health 200 over {runs} runs: "
        f"median {statistics.median(times) * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (target < 1000 ms)"
    )


if __name__ == "__main__":
    main()
