"""The tools offered to the model in a turn, and how one call of them is carried out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import attrs

from nanobot_api.adapters.tools.json_schema import JsonSchemaArguments, schema_problem
from nanobot_api.domain.conversation import ToolCall
from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.models import ToolContext, ToolSpec
from nanobot_api.domain.ports import Tool
from nanobot_api.domain.tools import ArgumentProblem, ToolOutput, decode_arguments

log = logging.getLogger(__name__)


class ToolSource(Protocol):
    """Tools that come and go while the server runs (those of MCP servers)."""

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools offered now; the same tuple object for as long as they do not change."""


@attrs.frozen
class _Entry:
    tool: Tool
    spec: ToolSpec
    check: JsonSchemaArguments


class ToolSet:
    """The tools of one turn, fixed for the whole turn. Running a call never raises for
    the model's mistakes or a tool's failure: the model reads what went wrong as the
    call's result and may try again."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._entries = {entry.spec.name: entry for entry in entries}
        self.specs: tuple[ToolSpec, ...] = tuple(entry.spec for entry in entries)
        """What the model is told it may call."""

    async def run(self, call: ToolCall, context: ToolContext) -> ToolOutput:
        """What the model reads as the result of ``call``. A refusal or failure is a
        result whose text starts with ``Error:`` (the tool progress events read it so)."""
        return await self._run(call, context)

    async def _run(self, call: ToolCall, context: ToolContext) -> ToolOutput:
        entry = self._entries.get(call.name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            return ToolOutput.error(
                f"Error: there is no tool named {call.name!r} (available: {known})."
            )
        arguments = decode_arguments(call.arguments)
        problem = (
            arguments.message
            if isinstance(arguments, ArgumentProblem)
            else entry.check.problem(arguments)
        )
        if problem is not None or isinstance(arguments, ArgumentProblem):
            return ToolOutput.error(
                f"Error: invalid arguments for {call.name}: {problem}. Fix and retry."
            )
        try:
            result = await entry.tool.call(arguments, context)
        except NanobotError as exc:
            return ToolOutput.error(f"Error: {call.name} failed: {exc.message}")
        except Exception:
            # A tool's bug must not end the user's turn; the details go to the log only.
            log.exception("tool %s raised", call.name)
            return ToolOutput.error(f"Error: {call.name} failed with an internal error.")
        return ToolOutput(result) if isinstance(result, str) else result


class ToolBox:
    """Tools by name: fixed ones (``message``) and those of sources that change (MCP
    servers connecting, or not). ``current`` is the set a turn uses."""

    def __init__(self, tools: Sequence[Tool] = (), sources: Sequence[ToolSource] = ()) -> None:
        # Each spec is read once: a tool may build it on every read, and the wire format
        # encodes the one tuple of them once by identity.
        self._fixed = [entry for tool in tools if (entry := _entry(tool, strict=True))]
        names = [entry.spec.name for entry in self._fixed]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two tools are named {name!r}")
        self._sources = tuple(sources)
        self._seen: tuple[tuple[Tool, ...], ...] = ()
        self._set = ToolSet(self._fixed)

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """What the model is told it may call now."""
        return self.current().specs

    def current(self) -> ToolSet:
        """The tools offered now; the same object while nothing changed."""
        seen = tuple(source.tools for source in self._sources)
        # Identity, not equality: a source hands out the same tuple while unchanged.
        if len(seen) != len(self._seen) or any(
            a is not b for a, b in zip(seen, self._seen, strict=True)
        ):
            entries = list(self._fixed)
            taken = {entry.spec.name for entry in entries}
            for tool in (tool for tools in seen for tool in tools):
                entry = _entry(tool, strict=False)
                if entry is not None and entry.spec.name not in taken:
                    taken.add(entry.spec.name)
                    entries.append(entry)
            self._seen, self._set = seen, ToolSet(entries)
        return self._set

    async def run(self, call: ToolCall, context: ToolContext) -> ToolOutput:
        """``call`` run on the tools offered now (see ``ToolSet.run``)."""
        return await self.current().run(call, context)


def _entry(tool: Tool, *, strict: bool) -> _Entry | None:
    spec = tool.spec
    problem = schema_problem(spec.parameters)
    if problem is None:
        return _Entry(tool, spec, JsonSchemaArguments(spec.parameters))
    if strict:
        raise ValueError(f"tool {spec.name!r} has an invalid schema: {problem}")
    # A provider refuses a whole request over one bad schema: the tool is left out
    # rather than every turn failing.
    log.warning("tool %s left out: its input schema is invalid (%s)", spec.name, problem)
    return None
