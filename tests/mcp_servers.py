"""A real MCP server for the tests, written with the ``mcp`` SDK, run as its own process.

    python tests/mcp_servers.py stdio                 # over stdin/stdout
    python tests/mcp_servers.py http PORT_FILE TOKEN  # streamable HTTP on 127.0.0.1:<free port>
    python tests/mcp_servers.py sse PORT_FILE TOKEN   # the same over SSE (path /sse)
    python tests/mcp_servers.py fail                  # prints to stderr and exits at once

Over HTTP every request must carry ``Authorization: Bearer TOKEN`` (else 401), so a
test sees the configured headers arrive. The port is written to PORT_FILE once bound.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
import zlib
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ImageContent, TextContent

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
async def slow(seconds: float) -> str:
    """Sleeps, then answers."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def pid() -> int:
    """The server's process id (a restarted server has another)."""
    return os.getpid()


@server.tool()
def die() -> str:
    """Exits the server process at once, mid-call."""
    os._exit(3)


@server.tool()
def env_names() -> str:
    """The names of the environment variables the server was started with."""
    return " ".join(sorted(os.environ))


@server.tool()
def picture() -> list[TextContent | ImageContent]:
    """A caption and a 1x1 PNG."""
    data = base64.b64encode(tiny_png()).decode()
    return [TextContent(text="a red dot"), ImageContent(data=data, mime_type="image/png")]


@server.tool()
def big(chars: int) -> str:
    """That many characters of text."""
    return "y" * chars


def tiny_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _with_token(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            return
        await app(scope, receive, send)

    return guarded


def serve_http(port_file: Path, token: str, *, sse: bool = False) -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port_file.write_text(str(sock.getsockname()[1]))
    app = _with_token(server.sse_app() if sse else server.streamable_http_app(), token)
    config = uvicorn.Config(app, fd=sock.fileno(), log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdio":
        server.run()
    elif mode in ("http", "sse"):
        serve_http(Path(sys.argv[2]), sys.argv[3], sse=mode == "sse")
    else:
        print(f"cannot start: {os.environ.get('API_TOKEN', 'no token')} refused", file=sys.stderr)
        sys.exit(1)
