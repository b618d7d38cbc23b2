"""The `nanobot` console script."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from nanobot_api.adapters.cli.args import parse_args
from nanobot_api.domain.errors import NanobotError


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a `nanobot` command; a usage or configuration error is one line and exit code 2."""
    from nanobot_api.app.wiring.commands import run

    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv), os.environ)
    except NanobotError as exc:
        print(f"nanobot: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
