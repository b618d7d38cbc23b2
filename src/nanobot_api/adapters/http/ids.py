"""Request and completion ids: unique, cheap, not secret.

A random per-process prefix and a counter: reading the OS's randomness for every id
cost more than the rest of an echo turn's bookkeeping.
"""

from __future__ import annotations

import itertools
import secrets

_PROCESS = secrets.token_hex(6)
_NEXT = itertools.count(1)


def new_id(prefix: str) -> str:
    """``<prefix><process><counter>``, e.g. ``chatcmpl-3f9a1c0d2b7e00000000002a``."""
    return f"{prefix}{_PROCESS}{next(_NEXT):012x}"
