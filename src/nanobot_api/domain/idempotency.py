"""Retries that do not repeat turns: what an ``Idempotency-Key`` record holds and decides.

The first request with a key claims it and runs; its answer, if the turn succeeded, is
kept for ``idempotencyH`` hours and given to every repeat with the same body. A repeat
while the first still runs waits; a repeat with another body is refused. Records are
per API key (``scope``): two tenants may use the same Idempotency-Key independently.
A claim is a lease: if its holder dies (a killed worker), the lease runs out and the
next repeat runs the turn itself.
"""

from __future__ import annotations

import hashlib
from typing import Final

import attrs

from nanobot_api.domain.errors import IdempotencyKeyReused, InvalidRequest

KEY_MAX_CHARS: Final = 255


@attrs.frozen
class StoredAnswer:
    """An answer as it was sent: status, content type, the whole body (for a stream,
    its events, keep-alive comments left out) and the headers that say what it
    answered (the session it continued)."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Claimed:
    """This request holds the key: it runs the turn, then finishes or abandons the claim."""


@attrs.frozen
class Running:
    """Another request holds the key and is still running: wait and claim again."""


KeyClaim = Claimed | Running | StoredAnswer


def check_idempotency_key(value: str) -> str:
    """The header's value, if it is 1-255 printable characters; else InvalidRequest."""
    if not 1 <= len(value) <= KEY_MAX_CHARS or not value.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{KEY_MAX_CHARS} printable characters", "Idempotency-Key"
        )
    return value


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means: the same method, path and body bytes."""
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


def decide(
    stored_fingerprint: str,
    request_fingerprint: str,
    answer: StoredAnswer | None,
    lease_until: float,
    now: float,
) -> KeyClaim:
    """What a request finds when a record exists for its key (the store's claim runs this
    inside its transaction): the stored answer, a running first to wait for, or the
    key for itself when the first's lease has run out. Raises IdempotencyKeyReused
    when the key came with another body."""
    if stored_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request body",
            "Idempotency-Key",
        )
    if answer is not None:
        return answer
    return Running() if lease_until > now else Claimed()
