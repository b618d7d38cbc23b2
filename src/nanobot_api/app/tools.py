"""The tools offered to the model in a turn, and how one call of them is carried out."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nanobot_api.domain.conversation import ToolCall
from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.models import ToolContext, ToolSpec
from nanobot_api.domain.ports import Tool
from nanobot_api.domain.tools import ArgumentProblem, parse_arguments

log = logging.getLogger(__name__)


class ToolBox:
    """Tools by name. Running a call never raises for the model's mistakes or a tool's
    failure: the model reads what went wrong as the call's result and may try again."""

    def __init__(self, tools: Sequence[Tool] = ()) -> None:
        # Each spec is read once: a tool may build it on every read, and the wire format
        # encodes the one tuple of them once by identity.
        self._tools: dict[str, tuple[Tool, ToolSpec]] = {}
        for tool in tools:
            spec = tool.spec
            if spec.name in self._tools:
                raise ValueError(f"two tools are named {spec.name!r}")
            self._tools[spec.name] = (tool, spec)
        self._specs = tuple(spec for _, spec in self._tools.values())

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told it may call."""
        return self._specs

    async def run(self, call: ToolCall, context: ToolContext) -> str:
        """The text the model reads as the result of ``call``."""
        entry = self._tools.get(call.name)
        if entry is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return f"Error: there is no tool named {call.name!r} (available: {known})."
        tool, spec = entry
        arguments = parse_arguments(call.arguments, spec.parameters)
        if isinstance(arguments, ArgumentProblem):
            return f"Error: invalid arguments for {call.name}: {arguments.message}. Fix and retry."
        try:
            return await tool.call(arguments, context)
        except NanobotError as exc:
            return f"Error: {call.name} failed: {exc.message}"
        except Exception:
            # A tool's bug must not end the user's turn; the details go to the log only.
            log.exception("tool %s raised", call.name)
            return f"Error: {call.name} failed with an internal error."
