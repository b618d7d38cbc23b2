"""What the composition root tells the serving code about start-up.

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

_OPENERS: Final = "nanobot_api.openers"


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
