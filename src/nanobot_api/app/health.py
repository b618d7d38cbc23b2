"""Liveness and readiness: whether the process answers, and whether it should get traffic."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from nanobot_api.app.drain import TurnGate
from nanobot_api.domain.ports import ReadinessCheck

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]
_CHECK_TIMEOUT_S = 2.0


class Health:
    """The ServerHealth port: the drain gate, a check per dependency (a store that
    must be reachable, a migration that must have run), and parts that may be down
    while the server serves (MCP servers)."""

    def __init__(self, gate: TurnGate) -> None:
        self._gate = gate
        self._checks: dict[str, Check] = {}
        self._parts: list[ReadinessCheck] = []

    def add_part(self, part: ReadinessCheck) -> None:
        """A part whose components may be down without the server being unready."""
        self._parts.append(part)

    def degraded(self) -> dict[str, str]:
        return {
            name: state
            for part in self._parts
            for name, state in part.readiness().items()
            if state != "ok"
        }

    def add_check(self, name: str, check: Check) -> None:
        """``check`` raises (or takes over two seconds) when ``name`` is not usable."""
        self._checks[name] = check

    @property
    def draining(self) -> bool:
        return self._gate.draining

    async def readiness(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, check in self._checks.items():
            found[name] = await _run(name, check)
        return found


async def _run(name: str, check: Check) -> str:
    try:
        with anyio.fail_after(_CHECK_TIMEOUT_S):
            await check()
    except TimeoutError:
        return f"no answer within {_CHECK_TIMEOUT_S:g}s"
    except Exception as exc:
        log.warning("readiness: %s is not usable: %s", name, exc)
        return f"unavailable ({type(exc).__name__})"
    return "ok"
