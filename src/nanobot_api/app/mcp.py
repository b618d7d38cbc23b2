"""The MCP servers of one process: started with the app, kept alive, their tools offered.

Each configured server gets a supervisor task. It connects (starting the command, or
reaching the URL), lists the tools, and then watches the connection: every
``probe_s`` seconds, and at once when a call finds it broken, it asks the server for its
tools again. A server that does not answer is dropped and connected anew, after a wait
that grows with each failure in a row (exponential, with jitter, so replicas and
servers do not retry in step); a connection that lived ``stable_s`` seconds starts the
count afresh.

While a server is down its tools stay offered, and a call gets a result saying the
server is being restarted: the model can tell the user, and a turn never fails over it.
A server that fails at start-up is reported in one log line and by :meth:`health`; its
tools are left out until it first connects (retried in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import anyio
import attrs
import tenacity

from nanobot_api.domain.errors import ToolServerFailed
from nanobot_api.domain.models import JsonObject, ToolContext, ToolSpec
from nanobot_api.domain.ports import Tool, ToolServer, ToolServerConnector
from nanobot_api.domain.tools import ToolOutput, distinct_tool_name, is_enabled

log = logging.getLogger(__name__)

READY = "ready"


@attrs.frozen
class Supervision:
    """How servers are started and kept: the start-up bound, the liveness probe, and
    the backoff between attempts (seconds)."""

    start_timeout_s: float = 30.0
    probe_s: float = 10.0
    probe_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_s: float = 60.0


@attrs.frozen
class McpServerPlan:
    """One server to supervise: its name, how to reach it, which tools, their timeout."""

    name: str
    connector: ToolServerConnector
    tool_timeout_s: float = 30.0
    enabled_tools: tuple[str, ...] = ("*",)


class McpTool:
    """One tool of an MCP server, as the agent offers it (implements the Tool port)."""

    def __init__(self, server: _Supervisor, raw_name: str, spec: ToolSpec) -> None:
        self._server = server
        self.raw_name = raw_name
        self.spec = spec

    async def call(self, arguments: JsonObject, context: ToolContext) -> ToolOutput:
        server = self._server
        link = server.link
        if link is None:
            return ToolOutput.error(
                f"Error: MCP server '{server.name}' is not available right now "
                f"({server.detail}); it is being restarted. Try again later."
            )
        timeout = server.plan.tool_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await link.call_tool(self.raw_name, arguments)
        except TimeoutError:
            return ToolOutput.error(
                f"Error: {self.spec.name} did not finish within {timeout:g} s and was stopped."
            )
        except ToolServerFailed as exc:
            server.lost(exc.message)
            return ToolOutput.error(
                f"Error: MCP server '{server.name}' failed during the call ({exc.message}); "
                "it is being restarted. Try again later."
            )


class _Supervisor:
    """Keeps one server connected; see the module's docstring."""

    def __init__(self, plan: McpServerPlan, supervision: Supervision) -> None:
        self.plan = plan
        self.name = plan.name
        self._supervision = supervision
        self.link: ToolServer | None = None
        self.state = "starting"
        self.detail = "starting"
        self.tools: tuple[McpTool, ...] = ()
        self.settled = anyio.Event()
        self._poked = anyio.Event()
        self._failures = 0
        self._ever_ready = False
        self._reported = False

    def lost(self, why: str) -> None:
        """A call found the connection broken: no call uses it until the supervisor has
        checked it (at once) and found it alive, or connected anew."""
        if self.link is not None:
            self.link, self.state, self.detail = None, "restarting", why
        self._poked.set()

    async def run(self) -> None:
        supervision = self._supervision
        while True:
            retrying = tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception_type(ToolServerFailed),
                # initial * 2^n, at most max_s, plus up to one initial of random jitter.
                wait=tenacity.wait_exponential_jitter(
                    multiplier=supervision.backoff_initial_s,
                    max=supervision.backoff_max_s,
                    jitter=supervision.backoff_initial_s,
                ),
                sleep=anyio.sleep,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._connect_and_watch()
            except Exception as exc:  # a bug of ours must not stop the supervision
                log.exception("MCP server %s: supervision failed; starting over", self.name)
                self._fail(f"internal error ({type(exc).__name__})")
                await anyio.sleep(supervision.backoff_max_s)

    async def _connect_and_watch(self) -> None:
        """Returns after a connection that lived long enough died (the backoff starts
        afresh); raises ToolServerFailed after one that did not, or did not come up."""
        started = time.monotonic()
        try:
            async with self.plan.connector.connect() as link:
                await self._listed(link)
                self.link, self.state, self.detail = link, READY, READY
                self._failures, self._ever_ready = 0, True
                log.info("MCP server %s is ready with %d tool(s)", self.name, len(self.tools))
                self.settled.set()
                why = await self._watch(link)
        except* ToolServerFailed as group:
            why = _first_message(group)
        self.link = None
        lived = time.monotonic() - started
        self._fail(why)
        if lived < self._supervision.stable_s:
            raise ToolServerFailed(why)

    def _fail(self, why: str) -> None:
        self._failures += 1
        if self._ever_ready:
            self.state, self.detail = "restarting", why
            if self._failures == 1:
                log.warning("MCP server %s stopped: %s; restarting it", self.name, why)
        else:
            self.report_start_failure(why)
        log.debug("MCP server %s: attempt %d failed: %s", self.name, self._failures, why)
        self.settled.set()

    def report_start_failure(self, why: str) -> None:
        """Marks the server failed at start-up; logged once, however often it fails."""
        self.state, self.detail = "failed", why
        if not self._reported:
            self._reported = True
            log.warning(
                "MCP server %s failed to start: %s (serving without its tools; retrying)",
                self.name,
                why,
            )

    async def _watch(self, link: ToolServer) -> str:
        """Waits until the server stops answering; says why."""
        supervision = self._supervision
        while True:
            with anyio.move_on_after(supervision.probe_s):
                await self._poked.wait()
            self._poked = anyio.Event()
            try:
                with anyio.fail_after(supervision.probe_timeout_s):
                    await self._listed(link)
            except TimeoutError:
                return f"it did not answer within {supervision.probe_timeout_s:g} s"
            except ToolServerFailed as exc:
                return exc.message
            # Alive after all (a call's failure was the call's own): back in service.
            self.link, self.state, self.detail = link, READY, READY

    async def _listed(self, link: ToolServer) -> None:
        specs = await link.list_tools()
        enabled = self.plan.enabled_tools
        kept: list[McpTool] = []
        taken: set[str] = set()
        for spec in specs:
            wrapped = distinct_tool_name(self.name, spec.name, taken)
            if is_enabled(enabled, spec.name, wrapped):
                taken.add(wrapped)
                kept.append(McpTool(self, spec.name, attrs.evolve(spec, name=wrapped)))
        if [(t.raw_name, t.spec) for t in kept] != [(t.raw_name, t.spec) for t in self.tools]:
            if not self.tools:
                _warn_unmatched(self.name, enabled, specs, kept)
            self.tools = tuple(kept)


def _warn_unmatched(
    name: str, enabled: tuple[str, ...], specs: tuple[ToolSpec, ...], kept: list[McpTool]
) -> None:
    known = {spec.name for spec in specs} | {tool.spec.name for tool in kept} | {"*"}
    missing = [entry for entry in enabled if entry not in known]
    if missing:
        log.warning("MCP server %s has no tool named %s (enabledTools)", name, ", ".join(missing))


def _first_message(group: BaseExceptionGroup[ToolServerFailed]) -> str:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc.message if isinstance(exc, ToolServerFailed) else str(exc)


class McpTools:
    """Every configured MCP server's tools (a ToolSource for the agent's ToolBox).

    :meth:`start` starts the supervisors and waits, at most ``start_timeout_s``, until
    each server is ready or has failed once; :meth:`stop` stops them (and so every
    stdio server).
    """

    def __init__(
        self, plans: list[McpServerPlan], supervision: Supervision = Supervision()
    ) -> None:
        self._supervisors = [_Supervisor(plan, supervision) for plan in plans]
        self._supervision = supervision
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[tuple[McpTool, ...], ...] = ()
        self._tools: tuple[Tool, ...] = ()

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools of every server that has connected, in configuration order."""
        seen = tuple(sup.tools for sup in self._supervisors)
        if len(seen) != len(self._seen) or any(
            a is not b for a, b in zip(seen, self._seen, strict=True)
        ):
            self._seen, self._tools = seen, tuple(tool for tools in seen for tool in tools)
        return self._tools

    def health(self) -> dict[str, str]:
        """Each server's state: ``ready``, ``starting``, or ``failed: <why>`` /
        ``restarting: <why>`` (the reason never holds a configured secret)."""
        return {
            sup.name: sup.state
            if sup.state in (READY, "starting")
            else f"{sup.state}: {sup.detail}"
            for sup in self._supervisors
        }

    def readiness(self) -> dict[str, str]:
        """``health`` as the ReadinessCheck port has it: ``mcp.<server>`` -> ``ok``."""
        return {
            f"mcp.{name}": "ok" if state == READY else state
            for name, state in self.health().items()
        }

    @property
    def ready(self) -> bool:
        """Whether every server is connected."""
        return all(sup.state == READY for sup in self._supervisors)

    def tools_of(self, name: str) -> tuple[McpTool, ...]:
        """The tools offered from server ``name`` (empty if unknown or not connected)."""
        return next((sup.tools for sup in self._supervisors if sup.name == name), ())

    async def start(self) -> None:
        if not self._supervisors or self._task is not None:
            return
        # A plain asyncio task: it must outlive before_serving, and Quart runs on asyncio.
        self._task = asyncio.get_running_loop().create_task(self._run())
        with anyio.move_on_after(self._supervision.start_timeout_s):
            for sup in self._supervisors:
                await sup.settled.wait()
        bound = self._supervision.start_timeout_s
        for sup in self._supervisors:
            if not sup.settled.is_set():
                sup.report_start_failure(f"not ready within {bound:g} s")

    async def _run(self) -> None:
        async with anyio.create_task_group() as group:
            for sup in self._supervisors:
                group.start_soon(sup.run)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
