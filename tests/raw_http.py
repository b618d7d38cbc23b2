"""Raw HTTP/1.1 on a socket: requests no well-behaved client would send."""

from __future__ import annotations

import json
from collections.abc import Mapping

import anyio
import attrs


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        payload = json.loads(self.body)
        assert isinstance(payload, dict)
        return payload

    def error_type(self) -> str:
        """The error body's type, once its shape (and code = status) is checked."""
        error = self.json()["error"]
        assert isinstance(error, dict)
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == self.status
        return str(error["type"])

    def error_message(self) -> str:
        error = self.json()["error"]
        assert isinstance(error, dict)
        return str(error["message"])


def request_bytes(
    method: str, path: str, headers: Mapping[str, str | bytes], body: bytes = b""
) -> bytes:
    """A request's bytes; a header valued b"" or "" is left out."""
    lines = [f"{method} {path} HTTP/1.1\r\n".encode()]
    for name, value in headers.items():
        if value:
            raw = value if isinstance(value, bytes) else value.encode()
            lines.append(name.encode() + b": " + raw + b"\r\n")
    return b"".join(lines) + b"\r\n" + body


async def read_answer(stream: anyio.abc.ByteStream, timeout_s: float = 10) -> Answer:
    """Reads until the server closes the connection; the whole answer."""
    raw = b""
    with anyio.fail_after(timeout_s):
        while True:
            try:
                raw += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return parse_answer(raw)


def parse_answer(raw: bytes) -> Answer:
    top, _, rest = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Answer(int(lines[0].split()[1]), headers, rest)


async def send(port: int, request: bytes, timeout_s: float = 10) -> Answer:
    """One request on its own connection (it should say ``Connection: close``)."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        return await read_answer(stream, timeout_s)
