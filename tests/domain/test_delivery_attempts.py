"""The record an outbox event keeps of its delivery attempts: what one is, and its bound."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.delivery_attempts import (
    ATTEMPTS_KEPT,
    MAX_ERROR_CHARS,
    DeliveryAttempt,
    began,
    ended,
    unrecorded,
)
from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.outbox import (
    OutboundMessage,
    OutboxEvent,
    RetryPolicy,
    claimed,
    delivered,
    failed_attempt,
    parked,
    retried,
)
from tests.strategies import OutboxStep, outbox_steps

MESSAGE = OutboundMessage("e1", "telegram", "42", "hello")
POLICY = RetryPolicy(max_attempts=3, base_s=1.0)


def step(event: OutboxEvent, kind: str, now: float, text: str) -> OutboxEvent:
    """What the worker, the courier and the operator do to an event, as pure rules."""
    match kind:
        case "claim":
            return claimed(event, now, text or None)
        case "fail" | "give-up":
            return failed_attempt(
                event, text, retryable=kind == "fail", now=now, policy=POLICY, random=lambda: 0.5
            )
        case "deliver":
            return delivered(event, now)
        case "park":
            return parked(event, now)
        case _:
            return retried(event, now, force=kind == "force")


def check(log: tuple[DeliveryAttempt, ...], attempts: int) -> None:
    assert len(log) <= ATTEMPTS_KEPT
    numbers = [a.number for a in log]
    assert numbers == list(range(attempts - len(log) + 1, attempts + 1))
    assert unrecorded(log, attempts) + len(log) == attempts
    # Only the newest attempt may still be under way.
    assert all(a.outcome != "running" for a in log[:-1])
    assert all(a.error is None or len(a.error) <= MAX_ERROR_CHARS for a in log)


@given(outbox_steps())
def test_every_attempt_is_on_record_up_to_the_bound_and_a_closed_record_never_changes(
    steps: list[OutboxStep],
) -> None:
    event = OutboxEvent.pending(MESSAGE, now=0.0)
    now = 0.0
    for kind, later, text in steps:
        now += later
        before = event
        try:
            event = step(event, kind, now, text)
        except NanobotError:
            continue  # a delivered event retried without --force: refused, unchanged
        check(event.attempt_log, event.attempts)
        closed = {a.number: a for a in before.attempt_log if a.outcome != "running"}
        for attempt in event.attempt_log:
            assert closed.get(attempt.number, attempt) == attempt
        if kind in ("retry", "force"):
            assert event.attempt_log == before.attempt_log


def test_a_failed_run_a_delivery_and_a_forced_resend_are_all_on_record() -> None:
    event = OutboxEvent.pending(MESSAGE, now=0.0)
    for n in (1, 2):
        event = failed_attempt(
            claimed(event, float(n), "host pid 7"),
            "telegram: HTTP 502",
            retryable=True,
            now=n + 0.5,
            policy=POLICY,
            random=lambda: 0.0,
        )
    event = delivered(claimed(event, 3.0, "host pid 8"), now=3.25)
    first_three = event.attempt_log
    event = retried(event, now=9.0, force=True)
    event = delivered(claimed(event, 10.0, "host pid 8"), now=10.5)
    assert event.attempt_log[:3] == first_three
    assert [(a.number, a.outcome, a.error, a.worker) for a in event.attempt_log] == [
        (1, "failed", "telegram: HTTP 502", "host pid 7"),
        (2, "failed", "telegram: HTTP 502", "host pid 7"),
        (3, "delivered", None, "host pid 8"),
        (4, "delivered", None, "host pid 8"),
    ]
    assert [a.seconds() for a in event.attempt_log] == [0.5, 0.5, 0.25, 0.5]


def test_an_attempt_whose_process_died_is_interrupted_when_the_next_begins() -> None:
    event = claimed(OutboxEvent.pending(MESSAGE, now=0.0), 1.0, "a pid 1")
    assert event.attempt_log[0].outcome == "running"
    event = claimed(event, 40.0, "b pid 2")  # the claim ran out; another process took it
    assert [a.outcome for a in event.attempt_log] == ["interrupted", "running"]
    assert event.attempt_log[0].ended_at is None


def test_the_last_attempts_are_kept_and_the_rest_counted() -> None:
    event = OutboxEvent.pending(MESSAGE, now=0.0)
    for n in range(ATTEMPTS_KEPT + 5):
        event = failed_attempt(
            retried(claimed(event, float(n)), float(n)),
            "HTTP 500",
            retryable=True,
            now=float(n),
            policy=POLICY,
            random=lambda: 0.0,
        )
    assert len(event.attempt_log) == ATTEMPTS_KEPT
    assert event.attempt_log[0].number == 6
    assert unrecorded(event.attempt_log, event.attempts) == 5


def test_an_event_from_before_records_has_its_earlier_attempts_unrecorded() -> None:
    old = attrs.evolve(OutboxEvent.pending(MESSAGE, now=0.0), attempts=3)
    assert unrecorded(old.attempt_log, old.attempts) == 3
    again = claimed(old, 5.0)
    assert [a.number for a in again.attempt_log] == [4]
    assert unrecorded(again.attempt_log, again.attempts) == 3
    # Closing with nothing running on record leaves the record as it is.
    assert ended((), 1.0, "HTTP 500") == ()


@given(st.text(max_size=2000), st.text(max_size=300) | st.none())
def test_any_error_and_worker_name_make_a_valid_bounded_record(
    error: str, worker: str | None
) -> None:
    (attempt,) = ended(began((), 1, 0.0, worker), 2.0, error)
    assert attempt.outcome == "failed"
    assert attempt.error is not None
    assert len(attempt.error) <= MAX_ERROR_CHARS
    assert attempt.worker is None or len(attempt.worker) <= 100


@pytest.mark.parametrize(
    "fields",
    [
        {"outcome": "failed", "ended_at": 1.0},  # no error
        {"outcome": "delivered"},  # no end
        {"outcome": "running", "ended_at": 1.0},
        {"outcome": "delivered", "ended_at": 1.0, "error": "x"},
        {"outcome": "lost"},
        {"number": 0},
    ],
)
def test_an_inconsistent_record_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - attrs' validators raise plain ValueError
        DeliveryAttempt(**{"number": 1, "started_at": 0.0, **fields})  # type: ignore[arg-type]
