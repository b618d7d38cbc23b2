"""MCP servers reached through the official ``mcp`` SDK: stdio, SSE, streamable HTTP.

The SDK speaks the protocol (the handshake, JSON-RPC, the transports); this module only
chooses the transport, translates the SDK's exceptions into ``ToolServerFailed`` once,
here, and turns a tool's result into bounded text and images. The SDK is imported when a
connector is made, so a server without ``tools.mcpServers`` never loads it.

A stdio server gets the environment it is configured with plus ``PATH`` and ``HOME``:
the SDK would also pass ``LOGNAME``, ``SHELL``, ``TERM`` and ``USER``, so the command is
started through ``env -u`` to drop those (not through ``env -i NAME=value``, which would
put the configured secrets on a command line that ``ps`` shows). Its stderr is read
through a pipe: each line is logged at debug level with every secret replaced, and the
last few are quoted when the server fails to start (as are the HTTP statuses of a URL
server's refusals).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from nanobot_api.domain.errors import NanobotError, ToolServerFailed
from nanobot_api.domain.filetypes import detect_kind
from nanobot_api.domain.models import ImagePart, JsonObject, JsonValue, ToolSpec
from nanobot_api.domain.redaction import Redactor
from nanobot_api.domain.text import printable, shorten
from nanobot_api.domain.tools import ResultLimits, ToolOutput, bounded_output

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import CallToolResult

log = logging.getLogger(__name__)

# Variables the SDK passes to every stdio server that the configuration did not give.
_SDK_EXTRAS = ("LOGNAME", "SHELL", "TERM", "USER")
_STDERR_KEPT = 5
_MAX_LINE = 300
_MAX_PAGES = 100
# The SDK's code for "the connection is gone" (JSON-RPC's implementation-defined range).
_CONNECTION_CLOSED = -32000


@attrs.frozen
class McpServerTarget:
    """Where one MCP server is: a command (stdio) or a URL (``sse``, ``streamableHttp``)."""

    transport: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    cwd: str = ""
    url: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)


class McpSdkConnector:
    """Connects to one MCP server (implements the ToolServerConnector port).

    ``redactor`` masks every configured secret in each message and log line this adapter
    writes; ``limits`` bound each tool result.
    """

    def __init__(
        self,
        name: str,
        target: McpServerTarget,
        *,
        redactor: Redactor | None = None,
        limits: ResultLimits | None = None,
        handshake_timeout_s: float = 30.0,
        call_timeout_s: float = 30.0,
    ) -> None:
        self._name = name
        self._handshake_timeout_s = handshake_timeout_s
        # The SDK's own bound on a call, a backstop behind the caller's timeout.
        self._call_timeout_s = call_timeout_s + 5.0
        self._target = target
        self._redact = redactor or Redactor()
        self._limits = limits or ResultLimits()

    def connect(self) -> AbstractAsyncContextManager[McpSdkServer]:
        return self._connected()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[McpSdkServer]:
        from mcp import Client

        stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_KEPT)
        failure: ToolServerFailed | None = None
        async with AsyncExitStack() as stack:
            try:
                transport = await self._transport(stack, stderr)
                # The SDK's read timeout bounds the handshake (a server that never answers).
                client = Client(transport, read_timeout_seconds=self._handshake_timeout_s)
                client = await stack.enter_async_context(client)
            except Exception as exc:  # every way a start can fail, translated once
                failure = ToolServerFailed(self._why(exc, stderr))
                failure.__cause__ = exc
            if failure is None:
                yield McpSdkServer(client, self._redact, self._limits, self._call_timeout_s)
                return
        # Raised outside the stack: its task group would wrap it in an ExceptionGroup.
        raise failure

    async def _transport(self, stack: AsyncExitStack, stderr: collections.deque[str]) -> Any:
        target = self._target
        if target.transport == "stdio":
            return await self._stdio(stack, stderr)
        import httpx2

        headers = dict(target.headers)
        if target.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(target.url, headers=headers)
        from mcp.client.streamable_http import streamable_http_client

        async def note_refusal(response: httpx2.Response) -> None:
            # The SDK reports a refused request without its status; a 401 or 403 is
            # what tells an operator the configured headers are wrong.
            if response.status_code >= 400:
                stderr.append(f"HTTP {response.status_code} from {target.url}")

        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [note_refusal]},
            )
        )
        return streamable_http_client(target.url, http_client=http)

    async def _stdio(self, stack: AsyncExitStack, stderr: collections.deque[str]) -> Any:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        target = self._target
        cwd = target.cwd or None
        command = _resolve(target.command, cwd)
        env_command = shutil.which("env") or "/usr/bin/env"
        dropped = [arg for name in _SDK_EXTRAS if name not in target.env for arg in ("-u", name)]
        params = StdioServerParameters(
            command=env_command,
            args=[*dropped, "--", command, *target.args],
            env=dict(target.env),
            cwd=cwd,
        )
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        errlog = os.fdopen(write_fd, "w")
        # The pipe's reader ends at EOF, once the server and our copy of the writing
        # end are both closed; closing ours as soon as the client has spawned it.
        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(os.close, read_fd)
        group.start_soon(self._read_stderr, read_fd, stderr)
        stack.callback(group.cancel_scope.cancel)
        stack.callback(errlog.close)
        return _ClosingAfterEntry(stdio_client(params, errlog=errlog), errlog)

    async def _read_stderr(self, fd: int, kept: collections.deque[str]) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while True:
                await anyio.wait_readable(fd)
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                *lines, buffer = (buffer + chunk).split(b"\n")
                for raw in lines:
                    line = self._clean(raw.decode("utf-8", "replace"))
                    if line:
                        kept.append(line)
                        log.debug("mcp server %s: %s", self._name, line)

    def _clean(self, text: str) -> str:
        # Control characters shown, never interpreted by a terminal reading the log.
        return shorten(self._redact(printable(text.strip())), _MAX_LINE)

    def _why(self, exc: BaseException, stderr: Sequence[str]) -> str:
        why = describe(exc)
        if stderr:
            why += f" ({' | '.join(stderr)})"
        return self._clean(why)


class _ClosingAfterEntry:
    """A transport that closes our copy of the stderr pipe once the process is spawned,
    so the pipe reader sees EOF when the server exits."""

    def __init__(self, inner: AbstractAsyncContextManager[Any], errlog: Any) -> None:
        self._inner = inner
        self._errlog = errlog

    async def __aenter__(self) -> Any:
        try:
            return await self._inner.__aenter__()
        finally:
            self._errlog.close()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)


class McpSdkServer:
    """A live MCP connection (implements the ToolServer port)."""

    def __init__(
        self, client: Client, redact: Redactor, limits: ResultLimits, call_timeout_s: float
    ) -> None:
        self._client = client
        self._redact = redact
        self._limits = limits
        self._call_timeout_s = call_timeout_s

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        specs: list[ToolSpec] = []
        cursor: str | None = None
        try:
            for _ in range(_MAX_PAGES):
                page = await self._client.list_tools(cursor=cursor, cache_mode="refresh")
                specs += [
                    ToolSpec(tool.name, tool.description or "", _json_object(tool.input_schema))
                    for tool in page.tools
                ]
                cursor = page.next_cursor
                if cursor is None:
                    break
        except Exception as exc:
            raise ToolServerFailed(self._scrub(describe(exc))) from exc
        return tuple(specs)

    async def call_tool(self, name: str, arguments: JsonObject) -> ToolOutput:
        from mcp import MCPError
        from pydantic import ValidationError

        try:
            result = await self._client.call_tool(
                name, arguments, read_timeout_seconds=self._call_timeout_s
            )
        except MCPError as exc:
            if exc.error.code == _CONNECTION_CLOSED:
                raise ToolServerFailed("the connection to the server was lost") from exc
            # The server refused the call (an unknown tool, bad parameters): its words.
            return ToolOutput.error(f"Error: {self._scrub(exc.error.message)}")
        except ValidationError:
            return ToolOutput.error("Error: the server's answer was malformed.")
        except Exception as exc:  # a transport failure: the server is unreachable
            raise ToolServerFailed(self._scrub(describe(exc))) from exc
        return self._output(result)

    def _output(self, result: CallToolResult) -> ToolOutput:
        texts: list[str] = []
        images: list[ImagePart] = []
        for block in result.content:
            kind = block.type
            if kind == "text":
                texts.append(block.text)  # type: ignore[union-attr]  # narrowed by type
            elif kind == "image":
                image, note = _image(block.data)  # type: ignore[union-attr]
                if image is not None:
                    images.append(image)
                else:
                    texts.append(note)
            elif kind == "resource":
                resource = block.resource  # type: ignore[union-attr]
                text = getattr(resource, "text", None)
                texts.append(
                    f"[resource {resource.uri}]\n{text}"
                    if isinstance(text, str)
                    else f"[resource {resource.uri}: binary content left out]"
                )
            elif kind == "resource_link":
                texts.append(f"[resource link: {block.uri}]")  # type: ignore[union-attr]
            else:
                texts.append(f"[{kind} content left out]")
        if not texts and not images and result.structured_content is not None:
            import json

            texts.append(json.dumps(result.structured_content, ensure_ascii=False))
        output = bounded_output(texts, images, self._limits, is_error=result.is_error)
        if output.is_error and not output.text.startswith("Error:"):
            output = attrs.evolve(output, text=f"Error: {output.text}")
        return attrs.evolve(output, text=self._scrub(output.text))

    def _scrub(self, text: str) -> str:
        return self._redact(text)


def _image(data: str) -> tuple[ImagePart | None, str]:
    """The image, judged by its bytes (never the server's MIME claim), or why not."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None, "[image left out: not valid base64]"
    try:
        kind = detect_kind(raw, "tool image")
    except NanobotError:
        return None, "[image left out: not a PNG, JPEG, GIF or WebP image]"
    if not kind.is_image:
        return None, "[image left out: not a PNG, JPEG, GIF or WebP image]"
    return ImagePart(raw, kind.mime), ""


def _json_object(value: object) -> dict[str, JsonValue]:
    return value if isinstance(value, dict) else {"type": "object", "properties": {}}


def _resolve(command: str, cwd: str | None) -> str:
    """The program's path, so a missing one is named instead of a bare exit code."""
    if os.sep in command:
        path = command if os.path.isabs(command) or cwd is None else os.path.join(cwd, command)
        if os.access(path, os.X_OK):
            return command
    else:
        found = shutil.which(command)
        if found is not None:
            return found
    raise ToolServerFailed(f"command not found: {command}")


def describe(exc: BaseException) -> str:
    """One line for a failure: the first real error inside task-group wrappers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ToolServerFailed):
        return exc.message
    text = " ".join(str(exc).split())
    if type(exc).__name__ == "MCPError" and text.lower() == "connection closed":
        return "the server closed the connection (it exited or is not an MCP server)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
