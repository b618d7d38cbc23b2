"""The record an outbox event keeps of each attempt to deliver it.

An attempt is put on record as it begins (when the event is claimed for it), so an
attempt cut short by a crash is on record too, and closed with its outcome once the
platform has answered::

    running      under way (or its process stopped and no later attempt began yet)
    delivered    every step reached the platform
    failed       ``error`` says why: free of secrets, at most MAX_ERROR_CHARS
    interrupted  no outcome was ever written (its process stopped, or its claim ran
                 out) and a later attempt began

An event keeps the records of its last :data:`ATTEMPTS_KEPT` attempts, so a channel that
is down for days cannot grow the outbox without end; ``OutboxEvent.attempts`` goes on
counting every attempt, and the first kept record's number says how many earlier ones
have no record (:func:`unrecorded`). A record once closed never changes: an operator's
retry, forced or not, keeps every record and adds the next attempts after them.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from nanobot_api.domain.text import shorten

AttemptOutcome: TypeAlias = Literal["running", "delivered", "failed", "interrupted"]
ATTEMPT_OUTCOMES: tuple[AttemptOutcome, ...] = ("running", "delivered", "failed", "interrupted")

# The records one event keeps: twice the default retry budget (channels.outbox.maxAttempts
# = 10), so the whole of a failed run and the retry after it stay visible.
ATTEMPTS_KEPT = 20
# An error as stored (in a record and as the event's last error): a plugin's error
# could be a whole page.
MAX_ERROR_CHARS = 500
# Who made an attempt, as the composition root names the process: a host and a pid.
MAX_WORKER_CHARS = 100


def _closed_has_end(
    instance: DeliveryAttempt, _: attrs.Attribute[float | None], value: float | None
) -> None:
    ended = instance.outcome in ("delivered", "failed")
    if ended != (value is not None):
        raise ValueError(f"a {instance.outcome} attempt {'needs' if ended else 'has no'} ended_at")


def _error_iff_failed(
    instance: DeliveryAttempt, _: attrs.Attribute[str | None], value: str | None
) -> None:
    if (instance.outcome == "failed") != (value is not None):
        raise ValueError("an attempt has an error exactly when it failed")
    if value is not None and len(value) > MAX_ERROR_CHARS:
        raise ValueError(f"an attempt's error is at most {MAX_ERROR_CHARS} characters")


@attrs.frozen
class DeliveryAttempt:
    """One attempt to deliver an outbox event. Times are Unix seconds.

    ``number`` is the event's attempt count once this one began (1 for the first; an
    operator's retry goes on counting). ``worker`` names the process that made it (None
    when it was not known). ``ended_at`` is set exactly when the outcome is delivered or
    failed, ``error`` exactly when it failed.
    """

    number: int = attrs.field(validator=attrs.validators.ge(1))
    started_at: float
    worker: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.max_len(MAX_WORKER_CHARS)),
    )
    outcome: AttemptOutcome = attrs.field(
        default="running", validator=attrs.validators.in_(ATTEMPT_OUTCOMES)
    )
    ended_at: float | None = attrs.field(default=None, validator=_closed_has_end)
    error: str | None = attrs.field(default=None, validator=_error_iff_failed)

    @classmethod
    def begun(cls, number: int, now: float, worker: str | None = None) -> DeliveryAttempt:
        """A new attempt, under way from ``now``; a worker name too long is cut."""
        if worker is not None:
            worker = worker[:MAX_WORKER_CHARS]
        return cls(number, now, worker)

    def seconds(self) -> float | None:
        """How long it took, once it ended (never below 0: clocks of two machines)."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)


def began(
    log: tuple[DeliveryAttempt, ...], number: int, now: float, worker: str | None = None
) -> tuple[DeliveryAttempt, ...]:
    """``log`` with attempt ``number`` under way from ``now`` at its end.

    A last attempt still running never got its outcome written (its process stopped or
    its claim ran out, or a new one could not begin): it becomes interrupted. Only the
    last :data:`ATTEMPTS_KEPT` records are kept.
    """
    if log and log[-1].outcome == "running":
        log = (*log[:-1], attrs.evolve(log[-1], outcome="interrupted"))
    return (*log, DeliveryAttempt.begun(number, now, worker))[-ATTEMPTS_KEPT:]


def ended(
    log: tuple[DeliveryAttempt, ...], now: float, error: str | None = None
) -> tuple[DeliveryAttempt, ...]:
    """``log`` with its running last attempt closed at ``now``: delivered without an
    ``error``, else failed with it (cut to :data:`MAX_ERROR_CHARS`). A log whose last
    attempt is not running (none began on record) comes back unchanged."""
    if not log or log[-1].outcome != "running":
        return log
    last = log[-1]
    if error is None:
        closed = attrs.evolve(last, outcome="delivered", ended_at=now)
    else:
        text = shorten(error, MAX_ERROR_CHARS)
        closed = attrs.evolve(last, outcome="failed", ended_at=now, error=text)
    return (*log[:-1], closed)


def unrecorded(log: tuple[DeliveryAttempt, ...], attempts: int) -> int:
    """How many of an event's ``attempts`` have no record: those let go beyond the
    bound, and those made before records were kept (a workspace upgraded in place)."""
    first = log[0].number if log else attempts + 1
    return max(0, min(first - 1, attempts))
