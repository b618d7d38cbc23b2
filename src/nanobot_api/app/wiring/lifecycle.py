"""What the composition root tells the serving code about start-up and shutdown.

Each store that keeps a file registers an :class:`Opener`. ``nanobot serve`` (and the
library's ``serve()``) open them all before the server starts, so a corrupt or
unreachable store is reported as one line instead of failing inside the ASGI lifespan
with a traceback. The app's own ``before_serving`` hooks open them too (idempotently),
for an app served any other way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import attrs
from quart import Quart

from nanobot_api.app.drain import TurnGate

_OPENERS: Final = "nanobot_api.openers"
_GATE: Final = "nanobot_api.gate"


@attrs.frozen
class Opener:
    """A store to open at start-up: its name for an operator, its file, how to open it."""

    what: str
    path: Path | None
    open: Callable[[], Awaitable[object]]


def add_opener(app: Quart, opener: Opener) -> None:
    app.extensions.setdefault(_OPENERS, []).append(opener)


def openers(app: Quart) -> tuple[Opener, ...]:
    return tuple(app.extensions.get(_OPENERS, ()))


def set_gate(app: Quart, gate: TurnGate) -> None:
    """The drain gate of the app's turns, for the serving code's signal handling."""
    app.extensions[_GATE] = gate


def gate_of(app: Quart) -> TurnGate | None:
    gate = app.extensions.get(_GATE)
    return gate if isinstance(gate, TurnGate) else None
