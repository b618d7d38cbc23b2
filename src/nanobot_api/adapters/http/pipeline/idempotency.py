"""Stage 6: ``Idempotency-Key`` on the POSTs that run a turn.

The first request with a key (per API key) runs; its answer, if the turn succeeded,
is kept for ``api.idempotencyH`` hours, and every repeat with the same body gets it
back (a stream as a stream, with ``Idempotent-Replayed: true``) without a second turn.
A repeat while the first still runs waits for it, and runs the turn itself if the
first fails: a failed turn is not kept. The same key with another body -> 422
``idempotency_key_reused``. The records live in the store, so they hold across
restarts and across every worker sharing it.

While the first runs, its claim is renewed (a store with IdempotencyLeases), so a
repeat after the first's worker died (``kill -9``, a lost replica) runs within one
short lease, not a whole turn budget.

An answer that names where its resource lives (``Content-Location``: a background
response, whose turn runs on after its first answer) is replayed as that resource
stands now, by routing the repeat on as a GET of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final

import anyio

from nanobot_api.adapters.http.pipeline.exchange import Exchange, Message, Send
from nanobot_api.adapters.http.pipeline.limits import TURN_PATHS
from nanobot_api.adapters.http.pipeline.routing import route_path
from nanobot_api.adapters.http.tenancy import tenant_of
from nanobot_api.domain.errors import StorageUnavailable
from nanobot_api.domain.idempotency import (
    Claimed,
    StoredAnswer,
    check_idempotency_key,
    fingerprint,
)
from nanobot_api.domain.ports import IdempotencyLeases, IdempotencyStore

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

log = logging.getLogger(__name__)

HEADER: Final = "idempotency-key"
REPLAYED: Final = (b"idempotent-replayed", b"true")
# Headers of the first answer a replay repeats; the rest are the repeat's own.
_KEPT: Final = frozenset({b"x-session-id", b"x-attachments-truncated", b"content-location"})
_LOCATION: Final = "content-location"
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 0.5
# The event names that end a stream that failed: the Responses API's.
_FAILED_EVENTS: Final = frozenset({b"error", b"response.failed"})
_FAILED_TYPES: Final = frozenset({"error", "response.failed"})


def succeeded(answer: StoredAnswer) -> bool:
    """Whether an answer is a success worth replaying: a 2xx, and a stream that did not
    end in an error event."""
    if not 200 <= answer.status < 300:
        return False
    if answer.content_type.startswith("text/event-stream"):
        return not _stream_failed(answer.body)
    return True


def _stream_failed(body: bytes) -> bool:
    """Whether an SSE body carries a failure in its framing: an ``event:`` line naming
    one, or a ``data:`` line whose JSON has a top-level error (chat completions' error
    event) or is a failure event. Decided per line, never by searching the body, so
    a reply whose text mentions "event: error" (its newlines are escaped inside the
    JSON, so it never starts a line) is still a success."""
    for line in body.splitlines():
        if line.startswith(b"event:"):
            if line[6:].strip() in _FAILED_EVENTS:
                return True
        # Only a line that names an error is parsed: most are text deltas.
        elif line.startswith(b"data:") and (b'"error' in line or b"response.failed" in line):
            try:
                data = json.loads(line[5:])
            except ValueError:
                continue  # "[DONE]", or not ours to judge
            if isinstance(data, dict) and (
                data.get("error") is not None or data.get("type") in _FAILED_TYPES
            ):
                return True
    return False


def located(answer: StoredAnswer) -> bool:
    """Whether a 2xx answer names where its resource lives (its turn runs on after the
    answer, whatever became of the answer's stream)."""
    return 200 <= answer.status < 300 and any(k.lower() == _LOCATION for k, _ in answer.headers)


class IdempotencyStage:
    """Runs, replays or refuses a turn-running POST that carries an Idempotency-Key."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        ttl_s: float,
        lease_s: float,
        paths: Collection[str] = TURN_PATHS,
        clock: Callable[[], float] = time.time,
        renewed_lease_s: float = 30.0,
    ) -> None:
        self._store = store
        self._paths = frozenset(paths)
        self._ttl_s = ttl_s
        self._leases = store if isinstance(store, IdempotencyLeases) else None
        # A claim that is renewed can be short: it outlives a dead holder only briefly.
        self._lease_s = lease_s if self._leases is None else renewed_lease_s
        self._clock = clock

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        given = exchange.headers.get(HEADER)
        if given is None or exchange.method != "POST" or exchange.path not in self._paths:
            await call_next(exchange)
            return
        key = check_idempotency_key(given)
        body = await exchange.read_body()
        exchange.replay_body(body)
        scope = tenant_of(exchange.scope).label
        request = fingerprint(exchange.method, exchange.path, body)
        wait_s = _POLL_FIRST_S
        while True:
            found = await self._store.claim(
                scope, key, request, now=self._clock(), lease_s=self._lease_s, ttl_s=self._ttl_s
            )
            if isinstance(found, StoredAnswer):
                location = next((v for k, v in found.headers if k.lower() == _LOCATION), None)
                if location is None or not located(found):
                    await _replay(exchange, found)
                    return
                # Its current state, not its first answer's bytes.
                sent = exchange.method, exchange.path
                path, _, query = location.partition("?")
                path = route_path(path, exchange.scope.get("root_path", ""))
                exchange.reroute("GET", f"{path}?{query}" if query else path)
                exchange.response_headers.append(REPLAYED)
                try:
                    await call_next(exchange)
                finally:
                    exchange.method, exchange.path = sent  # the access line names what came
                return
            if isinstance(found, Claimed):
                break
            # The first may run in another worker: the store is the one place to look.
            await anyio.sleep(wait_s)
            wait_s = min(wait_s * 2, _POLL_MAX_S)
        await self._run_first(exchange, call_next, scope, key)

    async def _run_first(self, exchange: Exchange, call_next: Next, scope: str, key: str) -> None:
        capture = _Capture()
        exchange.wrap_send(capture.around)
        kept = False
        # A plain asyncio task (Quart runs on asyncio): a task group would wrap the
        # request's own errors in an ExceptionGroup on their way to the error stage.
        renewing = None
        if self._leases is not None:
            renewing = asyncio.get_running_loop().create_task(self._renew(self._leases, scope, key))
        try:
            await call_next(exchange)
            answer = capture.answer()
            if answer is not None and (located(answer) or succeeded(answer)):
                with anyio.CancelScope(shield=True):
                    await self._store.finish(scope, key, answer)
                kept = True
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
            if not kept:
                # Failed, refused or cut off: a retry runs the turn again.
                with anyio.CancelScope(shield=True):
                    await self._store.abandon(scope, key)

    async def _renew(self, leases: IdempotencyLeases, scope: str, key: str) -> None:
        """Renews the claim every third of its lease until cancelled."""
        while True:
            await anyio.sleep(self._lease_s / 3)
            try:
                await leases.renew(scope, key, self._clock() + self._lease_s)
            except StorageUnavailable as exc:  # the next renewal may get through
                log.warning("Idempotency-Key claim not renewed: %s", exc.message)


class _Capture:
    """Keeps what an answer sends (keep-alive comments left out) as it passes."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.done = False

    def around(self, send: Send) -> Send:
        async def kept(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                self.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunk = bytes(message.get("body", b""))
                if chunk and not chunk.startswith(b":"):
                    self.parts.append(chunk)
                self.done = not message.get("more_body", False)
            await send(message)

        return kept

    def answer(self) -> StoredAnswer | None:
        """The whole answer; None if it never ended, unless it named its resource's
        location (then it is replayed from there, its own body not needed)."""
        location = any(k.lower() == _LOCATION.encode() for k, _ in self.headers)
        if not self.done and not location:
            return None
        content_type = next(
            (v.decode("latin-1") for k, v in self.headers if k.lower() == b"content-type"), ""
        )
        kept = tuple(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in self.headers
            if k.lower() in _KEPT
        )
        body = b"".join(self.parts) if self.done else b""
        return StoredAnswer(self.status, content_type, body, kept)


async def _replay(exchange: Exchange, answer: StoredAnswer) -> None:
    headers = [(b"content-type", answer.content_type.encode("latin-1")), REPLAYED]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    start = {"type": "http.response.start", "status": answer.status, "headers": headers}
    await exchange.send(start)
    await exchange.send({"type": "http.response.body", "body": answer.body})
