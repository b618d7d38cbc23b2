"""Request and completion ids: unique, cheap, not secret.

A random per-process prefix and a counter: reading the OS's randomness for every id
cost more than the rest of an echo turn's bookkeeping.
"""

from __future__ import annotations

import itertools
import os
import secrets

_PROCESS = secrets.token_hex(6)
_NEXT = itertools.count(1)


def _new_process() -> None:
    # A forked worker (``--workers``) gets a prefix of its own, or two workers would
    # hand out the same ids.
    global _PROCESS, _NEXT  # noqa: PLW0603 - per-process state, reset once per fork
    _PROCESS = secrets.token_hex(6)
    _NEXT = itertools.count(1)


os.register_at_fork(after_in_child=_new_process)


def new_id(prefix: str) -> str:
    """``<prefix><process><counter>``, e.g. ``chatcmpl-3f9a1c0d2b7e00000000002a``."""
    return f"{prefix}{_PROCESS}{next(_NEXT):012x}"
