"""Keeping configured secrets out of everything that leaves the process.

One :class:`Redactor` holds every secret a server is configured with (provider API
keys, every provider extra-header value, channel tokens, webhook URLs and secrets) and
replaces each occurrence with ``***``. Answers, stream events, error bodies, log lines
and stored delivery errors all pass through the same one, so a secret that an upstream
error body quotes back, or that a prompt-injected model repeats, never reaches a client,
a log or the outbox.

Streamed text arrives in pieces, and a secret may be split across two of them:
:class:`StreamRedactor` holds back a piece's tail while it could still be the start of
a secret, and lets it go as soon as it cannot.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

MASK = "***"
# A configured value shorter than this is not treated as a secret: masking a "1" or a
# "yes" would garble every text that happens to contain it.
MIN_SECRET_CHARS = 4


def _longest_first(values: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so a secret that contains another is not left half visible.
    kept = {value for value in values if len(value) >= MIN_SECRET_CHARS}
    return tuple(sorted(kept, key=lambda value: (-len(value), value)))


@attrs.frozen
class Redactor:
    """Replaces every configured secret in a text with ``***``; an empty one is a no-op."""

    secrets: tuple[str, ...] = attrs.field(default=(), converter=_longest_first, repr=False)

    @classmethod
    def of(cls, *groups: Iterable[str]) -> Redactor:
        """A redactor for every value in ``groups`` at least ``MIN_SECRET_CHARS`` long."""
        return cls(tuple(value for group in groups for value in group))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def joined(self, other: Redactor) -> Redactor:
        """A redactor for the secrets of both."""
        return Redactor(self.secrets + other.secrets)

    def stream(self) -> StreamRedactor:
        """A fresh redactor for one text that arrives in pieces."""
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a text fed piece by piece: what :meth:`feed` returns, joined with what
    :meth:`flush` returns, equals the whole text redacted at once."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""
        self._firsts = frozenset(secret[0] for secret in redactor.secrets)
        self._reach = max((len(secret) for secret in redactor.secrets), default=1) - 1

    def feed(self, piece: str) -> str:
        """The part of the text so far that can be let go of, redacted."""
        if not self._firsts:
            return piece
        text = self._redactor(self._held + piece)
        cut = self._held_from(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """What was held back, at the end of the text."""
        held, self._held = self._held, ""
        return held

    def _held_from(self, text: str) -> int:
        """Where the shortest tail of ``text`` that may begin a secret starts (or its end)."""
        start = max(0, len(text) - self._reach)
        for index in range(start, len(text)):
            if text[index] in self._firsts:
                tail = text[index:]
                if any(secret.startswith(tail) for secret in self._redactor.secrets):
                    return index
        return len(text)
