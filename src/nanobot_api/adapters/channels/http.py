"""What the HTTP channels share: one request with its failures translated, and the steps.

Every failure leaves a channel as ``DeliveryFailed`` whose message names the channel and
what happened (``telegram: HTTP 502``, ``discord: timed out after 30s``), never a URL
or a header: Telegram's token is part of its URLs and a webhook URL may carry a secret,
and aiohttp's exception texts quote the URL. So library exceptions are translated with
``from None`` (their text must not ride along in a traceback either), and whatever a
platform says about an error is scrubbed of the channel's secrets before it is quoted.

A message is delivered as a sequence of steps: its text parts, then one step per file.
:func:`deliver_steps` runs them from ``message.progress`` on and, when one fails, tells
how many got through, so a retry resumes instead of repeating them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import anyio
import attrs

from nanobot_api.adapters.retry_after import retry_after
from nanobot_api.domain.errors import DeliveryFailed
from nanobot_api.domain.outbox import DeliveryReceipt, OutboundMessage, redact
from nanobot_api.domain.text import shorten

# An error body is read for its explanation only; a huge one is not our problem.
_MAX_BODY = 64 * 1024
_MAX_QUOTE = 200
_RETRY_STATUSES = frozenset({408, 425, 429})
USER_AGENT = "nanobot-api (https://github.com/HKUDS/nanobot)"


@attrs.frozen
class Answer:
    """A platform's HTTP answer: status, parsed JSON body (None if not JSON), Retry-After."""

    status: int
    body: Any
    retry_after_s: float | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def wait_s(self, *path: str) -> float | None:
        """How long the platform asks to wait: the number at ``path`` in the body (more
        precise where it is given), else the Retry-After header."""
        wait = self.field(*path)
        return float(wait) if isinstance(wait, int | float) else self.retry_after_s

    def field(self, *path: str) -> Any:
        """``body[path[0]][path[1]]...``, or None where the body has no such thing."""
        value = self.body
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


class TokenChannel:
    """What the platforms reached with a bot token share: the HTTP session, the token,
    the API's base URL (from config: the platform's, or a local server in tests) and the
    time one request may take. ``authorization`` is the header value the token makes,
    ``path_prefix`` what it puts in front of every path."""

    name: ClassVar[str]
    authorization: ClassVar[str | None] = None  # e.g. "Bot {token}"; None: not a header
    path_prefix: ClassVar[str] = ""  # e.g. "bot{token}/"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        token: str,
        api_base: str,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self._session = session
        self._token = token
        self._base = f"{api_base.rstrip('/')}/{self.path_prefix.format(token=token)}"
        self._timeout_s = timeout_s
        self._headers = {}
        if self.authorization is not None:
            self._headers["Authorization"] = self.authorization.format(token=token)

    async def _post(self, path: str, **body: Any) -> Answer:
        """POSTs to ``<base>/<path>`` with the token's headers; a transport failure raises
        DeliveryFailed, and any status comes back as an Answer."""
        return await request(
            self._session,
            self.name,
            "POST",
            f"{self._base}{path}",
            timeout_s=self._timeout_s,
            headers=self._headers,
            **body,
        )


async def request(
    session: aiohttp.ClientSession,
    channel: str,
    method: str,
    url: str,
    *,
    timeout_s: float,
    **kwargs: Any,
) -> Answer:
    """Sends one request and reads its (bounded) answer; any transport failure is a
    retryable DeliveryFailed that names ``channel`` and the kind of failure only."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    kwargs["headers"] = {"User-Agent": USER_AGENT, **kwargs.get("headers", {})}
    try:
        async with session.request(method, url, timeout=timeout, **kwargs) as resp:
            raw = await resp.content.read(_MAX_BODY)
            return Answer(resp.status, _json(raw), retry_after(resp.headers.get("Retry-After")))
    except TimeoutError:
        raise DeliveryFailed(f"{channel}: timed out after {timeout_s:g}s", retryable=True) from None
    except aiohttp.InvalidURL:
        raise DeliveryFailed(
            f"{channel}: the configured URL is not valid", retryable=False
        ) from None
    except aiohttp.ClientError as exc:
        # The type says enough (ClientConnectorError, ServerDisconnectedError...); its text
        # holds the URL.
        raise DeliveryFailed(
            f"{channel}: connection failed ({type(exc).__name__})", retryable=True
        ) from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def failure(
    channel: str, status: int, detail: object, retry_after_s: float | None, secrets: Collection[str]
) -> DeliveryFailed:
    """The DeliveryFailed for an HTTP status: 408, 425, 429 and 5xx are retryable (with
    the platform's wait), any other status is a refusal that a retry would not change."""
    text = f"{channel}: HTTP {status}"
    if isinstance(detail, str) and detail.strip():
        text += f" {quote(detail, secrets)}"
    retryable = status in _RETRY_STATUSES or status >= 500
    return DeliveryFailed(text, retryable=retryable, retry_after_s=retry_after_s)


def quote(text: str, secrets: Collection[str]) -> str:
    """A platform's own words, shortened and with every secret replaced by ``***``."""
    return shorten(redact(" ".join(text.split()), secrets), _MAX_QUOTE)


async def read_media(channel: str, path: str) -> tuple[str, bytes]:
    """A media file's name and bytes, read off the event loop; a file that has gone
    missing since it was accepted is a permanent failure (a retry will not bring it back)."""
    name = Path(path).name
    try:
        data = await anyio.Path(path).read_bytes()
    except OSError:
        raise DeliveryFailed(
            f"{channel}: media file '{name}' can no longer be read", retryable=False
        ) from None
    return await _uploaded_name(path) or name, data


async def _uploaded_name(path: str) -> str | None:
    """The name the client gave an upload (kept beside the copy, see the media store),
    so a recipient sees ``report.pdf`` rather than the copy's random name."""
    try:
        meta = json.loads(await anyio.Path(f"{path}.json").read_bytes())
    except (OSError, ValueError):
        return None
    name = meta.get("original_name") if isinstance(meta, dict) else None
    return Path(name).name or None if isinstance(name, str) else None


async def deliver_steps(
    message: OutboundMessage,
    texts: Sequence[str],
    send_text: Callable[[int, str], Awaitable[str]],
    send_file: Callable[[int, str], Awaitable[str]],
) -> DeliveryReceipt:
    """Runs steps ``message.progress`` onwards: ``send_text(step, part)`` for each text
    part, then ``send_file(step, path)`` for each file; each returns the platform's id
    for what it created. A whitespace-only part is skipped (platforms refuse empty
    messages) but counts as a step. A failure is re-raised with the steps done so far."""
    ids: list[str] = []
    steps: list[tuple[Callable[[int, str], Awaitable[str]], str]] = [
        *((send_text, part) for part in texts),
        *((send_file, path) for path in message.media),
    ]
    for index in range(message.progress, len(steps)):
        send, item = steps[index]
        if send is send_text and not item.strip():
            continue
        try:
            ids.append(await send(index, item))
        except DeliveryFailed as exc:
            raise DeliveryFailed(
                exc.message,
                retryable=exc.retryable,
                retry_after_s=exc.retry_after_s,
                progress=index,
            ) from None
    return DeliveryReceipt(message.channel, message.chat_id, tuple(ids))
