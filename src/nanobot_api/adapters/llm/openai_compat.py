"""Any OpenAI-compatible chat-completions server, over one pooled aiohttp client session.

aiohttp rather than httpx because this call is the hot path of every turn: in the same
minimal proxy against an instant upstream, aiohttp's client did about 3x the requests/s
of httpx at half the p50 (``bench/upstream_clients.py`` reproduces it).

Every failure leaves here as ``UpstreamFailed`` with a message that names what the
upstream did (``Upstream model error: HTTP 503``) and never the API key: the key is
only ever written into the Authorization header, and upstream error texts are
scrubbed of it before they are quoted.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import anyio

from nanobot_api.adapters.llm.openai_wire import (
    StreamAccumulator,
    error_message,
    response_of,
)
from nanobot_api.adapters.llm.request_encoder import RequestEncoder
from nanobot_api.adapters.llm.sse import SseDecoder
from nanobot_api.adapters.retry_after import retry_after
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.models import ModelRequest, ModelResponse, ToolCallPiece
from nanobot_api.domain.redaction import Redactor

log = logging.getLogger(__name__)

OnCall = Callable[[ToolCallPiece], Awaitable[None]]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
_MAX_ERROR_BODY = 16 * 1024
_MAX_QUOTE = 300
# A whole (non-streamed) answer this much larger than the reply bound, in bytes per
# character plus room for the JSON around it, is asked for again as a stream, which
# can be cut: a document cannot be parsed from its first part.
_BYTES_PER_CHAR = 4
_DOCUMENT_SLACK = 64 * 1024
# Time kept back from the caller's deadline: a retry that would end with the deadline
# gives the caller a timeout instead of the upstream's real answer, so do not start it.
_DEADLINE_MARGIN_S = 0.25
_POOL_SIZE = 4096
# A body larger than this goes to aiohttp as a file-like object, which it writes in
# 64 KiB pieces with a yield to the loop between them; raw bytes that large are one
# write (aiohttp warns it may hold the loop). Small bodies, nearly all of them, stay
# bytes: one write is cheapest.
_STREAMED_BODY = 1024 * 1024


class _TooLarge(Exception):
    """A whole answer grew past the reply bound before it was read."""


class _Retry(Exception):
    """An attempt failed in a way worth another try after ``delay`` seconds."""

    def __init__(self, failure: UpstreamFailed, delay: float | None) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.delay = delay


class OpenAICompatChatModel:
    """A ChatModel that POSTs to ``<api_base>/chat/completions`` and streams the answer.

    Every turn shares one ``aiohttp.ClientSession``, so connections are pooled. Given a
    ``session``, the caller owns it (opens and closes it); given None, the model opens
    its own on first use (inside the running event loop, as aiohttp requires) and
    ``await model.close()`` closes it. ``read_timeout_s`` bounds the
    silence between two pieces of an answer, not the whole answer; the whole is bounded
    by the caller's deadline (``anyio.fail_after`` around the turn), which also bounds
    retries of 429 and 5xx answers.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        api_base: str,
        api_key: str | None,
        model: str,
        extra_headers: Mapping[str, str] | None = None,
        *,
        stream: bool = True,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 120.0,
        max_retries: int = 4,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        cached_sessions: int = 256,
        redactor: Redactor | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._url = api_base.rstrip("/") + "/chat/completions"
        # Its own credentials are always masked; ``redactor`` adds the server's others.
        own = Redactor.of([api_key or ""], (extra_headers or {}).values())
        self._redact = own.joined(redactor) if redactor else own
        self._model = model
        self._stream = stream
        # As many encoded windows as the store keeps histories: one bound for both.
        self._encoder = RequestEncoder(cached_sessions)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **(extra_headers or {}),
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._read_timeout_s = read_timeout_s
        self._max_retries = max_retries
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s

    @property
    def model(self) -> str:
        """The upstream model id sent in every request."""
        return self._model

    async def close(self) -> None:
        """Closes the client session if the model opened it; idempotent."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A pool wide enough for the concurrency one server process sees (as many
            # as its listen backlog: with 512, of a thousand streams at once the last
            # half waited for the first to end, bench/inflight.py); DNS cached so a hot
            # path does not resolve the provider's name per turn. No cookie jar: every
            # user's turns share this session, and a cookie one turn was given must not
            # ride along with another's (it also saves its work per call).
            connector = aiohttp.TCPConnector(limit=_POOL_SIZE, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def __repr__(self) -> str:
        # Never the headers: they hold the key.
        return f"OpenAICompatChatModel(url={self._url!r}, model={self._model!r})"

    async def complete(
        self,
        request: ModelRequest,
        on_delta: Callable[[str], Awaitable[None]],
        on_call: OnCall | None = None,
    ) -> ModelResponse:
        # A caller that reads the answer only when it is whole gets it in one document:
        # parsing a stream of chunks cost more than the rest of the call.
        stream = self._stream and request.stream
        body = self._encoder.encode(self._model, request, stream=stream)
        headers = self._stream_headers if stream else self._headers
        attempt = 0
        while True:
            try:
                return await self._attempt(
                    body, headers, on_delta, on_call, request.max_reply_chars
                )
            except _TooLarge as exc:
                if headers is self._stream_headers:
                    # Asked for a stream, it sent a document that large all the same.
                    raise UpstreamFailed(
                        "Upstream model error: the answer is larger than the reply bound"
                    ) from exc
                body = self._encoder.encode(self._model, request, stream=True)
                headers = self._stream_headers
            except _Retry as retry:
                delay = self._backoff(attempt, retry.delay)
                attempt += 1
                if attempt > self._max_retries or not _fits_deadline(delay):
                    raise retry.failure from retry.__cause__
                log.warning(
                    "%s; retry %d of %d in %.2fs", retry.failure.message, attempt,
                    self._max_retries, delay,
                )  # fmt: skip
                await anyio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._retry_max_s)
        return min(self._retry_base_s * 2.0**attempt, self._retry_max_s)

    async def _attempt(
        self,
        body: bytes,
        headers: Mapping[str, str],
        on_delta: Callable[[str], Awaitable[None]],
        on_call: OnCall | None,
        max_chars: int | None,
    ) -> ModelResponse:
        delivered = False

        async def deliver(text: str) -> None:
            nonlocal delivered
            delivered = True
            await on_delta(text)

        async def deliver_call(piece: ToolCallPiece) -> None:
            nonlocal delivered
            delivered = True
            if on_call is not None:
                await on_call(piece)

        try:
            data = io.BytesIO(body) if len(body) > _STREAMED_BODY else body
            async with self._client().post(
                self._url, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    raise await self._status_failure(resp)
                if resp.content_type == "text/event-stream":
                    return await self._read_stream(resp, deliver, deliver_call, max_chars)
                # Asked to stream or not, a server may answer with one JSON document.
                response = response_of(json.loads(await _whole(resp, max_chars)))
                if response.message.content:
                    await deliver(response.message.content)
                return response
        except aiohttp.ClientConnectorError as exc:
            log.warning("upstream %s unreachable: %s", self._url, exc)
            raise UpstreamFailed("Upstream model error: cannot connect to the provider") from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamFailed(
                "Upstream model error: connecting to the provider timed out"
            ) from exc
        except TimeoutError as exc:
            raise UpstreamFailed(
                f"Upstream model error: no answer within {self._read_timeout_s:g}s"
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            failure = UpstreamFailed("Upstream model error: the connection broke off mid-answer")
            if not delivered and isinstance(exc, aiohttp.ServerDisconnectedError):
                # Most often a pooled keep-alive connection that the server had already
                # closed; nothing reached the caller yet, so one more try is safe.
                raise _Retry(failure, 0.0) from exc
            raise failure from exc
        except (aiohttp.ClientError, ValueError) as exc:  # WireError is a ValueError
            log.warning("upstream %s failed: %s", self._url, self._scrub(repr(exc)))
            raise UpstreamFailed("Upstream model error: invalid answer from the provider") from exc

    async def _status_failure(self, resp: aiohttp.ClientResponse) -> Exception:
        status = resp.status
        detail = ""
        if status in (401, 403):
            detail = ": the provider refused the API key"
        else:
            try:
                raw = b""
                async for piece in resp.content.iter_any():
                    raw += piece
                    if len(raw) > _MAX_ERROR_BODY:
                        break  # an error body that large is not worth quoting
                quoted = error_message(json.loads(raw)) or ""
            except (ValueError, aiohttp.ClientError, TimeoutError):
                quoted = ""
            quoted = self._scrub(quoted)[:_MAX_QUOTE]
            detail = f": {quoted}" if quoted else ""
        failure = UpstreamFailed(f"Upstream model error: HTTP {status}{detail}")
        log.warning("upstream %s answered HTTP %d%s", self._url, status, detail)
        if status in _RETRY_STATUSES:
            return _Retry(failure, retry_after(resp.headers.get("Retry-After")))
        return failure

    async def _read_stream(
        self,
        resp: aiohttp.ClientResponse,
        on_delta: Callable[[str], Awaitable[None]],
        on_call: OnCall,
        max_chars: int | None,
    ) -> ModelResponse:
        decoder = SseDecoder()
        acc = StreamAccumulator()
        async for chunk in resp.content.iter_any():
            await self._events(decoder.feed(chunk), acc, on_delta, on_call)
            if max_chars is not None and acc.size > max_chars:
                # Not read on to the end: the connection is dropped instead of pooled,
                # which costs far less than the rest of a runaway answer.
                log.warning("upstream answer cut at %d characters", max_chars)
                return acc.cut_response(max_chars)
        await self._events(decoder.close(), acc, on_delta, on_call)
        if not acc.done and acc.finish_reason is None:
            raise UpstreamFailed("Upstream model error: the stream ended before the answer did")
        return acc.response()

    async def _events(
        self,
        events: list[str],
        acc: StreamAccumulator,
        on_delta: Callable[[str], Awaitable[None]],
        on_call: OnCall,
    ) -> None:
        """Passes on what the events of one read add: their text as one piece.

        Unhurried, a read holds one event and nothing changes. Behind (many streams in
        flight), a read holds several, and joined they cost the turn and the client's
        stream one write instead of one per token, so a busy server catches up instead
        of falling further behind (bench/inflight.py). A tool call's piece still comes
        after the text that came before it.
        """
        texts: list[str] = []
        for data in events:
            text = self._event(data, acc)
            if text:
                texts.append(text)
            if acc.pieces:
                if texts:
                    await on_delta("".join(texts))
                    texts.clear()
                for piece in acc.take_pieces():
                    await on_call(piece)
        if texts:
            await on_delta("".join(texts))

    def _event(self, data: str, acc: StreamAccumulator) -> str:
        """The answer text one event adds ("" if none); its tool call pieces wait in
        ``acc``."""
        if acc.done:
            # Read on to the end of the body so the connection goes back to the pool.
            return ""
        if data.strip() == "[DONE]":
            acc.done = True
            return ""
        chunk = json.loads(data)
        problem = error_message(chunk)
        if problem is not None:
            quoted = self._scrub(problem)[:_MAX_QUOTE]
            raise UpstreamFailed(f"Upstream model error: {quoted}")
        return acc.add(data, chunk)

    def _scrub(self, text: str) -> str:
        return self._redact(text)


async def _whole(resp: aiohttp.ClientResponse, max_chars: int | None) -> bytes:
    """A whole answer's body; raises _TooLarge once it is past what ``max_chars`` needs."""
    if max_chars is None:
        return await resp.read()
    cap = max_chars * _BYTES_PER_CHAR + _DOCUMENT_SLACK
    if (resp.content_length or 0) > cap:
        raise _TooLarge
    raw = bytearray()
    async for piece in resp.content.iter_any():
        raw += piece
        if len(raw) > cap:
            raise _TooLarge
    return bytes(raw)


def _fits_deadline(delay: float) -> bool:
    deadline = anyio.current_effective_deadline()
    return anyio.current_time() + delay + _DEADLINE_MARGIN_S < deadline
