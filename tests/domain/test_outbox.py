"""The outbox's pure rules: splitting texts, backoff with jitter, state transitions."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nanobot_api.domain.errors import InvalidRequest, NanobotError, RetryLater
from nanobot_api.domain.outbox import (
    DISCORD_TEXT_LIMIT,
    SLACK_TEXT_LIMIT,
    TELEGRAM_TEXT_LIMIT,
    OutboundMessage,
    OutboxEvent,
    OutboxTally,
    RetryPolicy,
    claimed,
    delivered,
    failed_attempt,
    parked,
    retried,
    split_text,
    utf16_len,
)
from nanobot_api.domain.text import shorten

# Text that exercises every cut rule: words, line and paragraph breaks, astral-plane
# characters (two UTF-16 units), combining marks and joiners.
_ALPHABET = st.sampled_from(["a", "b", "é", " ", "\n", "\n\n", "😀", "\u0301", "\u200d", "中"])
texts = st.lists(_ALPHABET, max_size=400).map("".join) | st.text(max_size=400)
limits = st.integers(min_value=2, max_value=64)


_times = st.floats(min_value=0, max_value=4e9)


@given(st.none() | _times, _times)
def test_the_oldest_waiting_age_is_never_negative_and_zero_when_none_waits(
    oldest: float | None, now: float
) -> None:
    age = OutboxTally(pending=1, oldest_waiting_at=oldest).waiting_age_s(now)
    assert age >= 0
    assert age == (0.0 if oldest is None else max(0.0, now - oldest))


def test_a_tally_counts_by_status_and_refuses_a_negative_count() -> None:
    tally = OutboxTally(queued=1, pending=2, failed=3, delivered=4)
    assert [tally.count(s) for s in ("queued", "pending", "failed", "delivered")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="pending"):
        OutboxTally(pending=-1)


@given(texts, limits)
def test_split_parts_join_back_to_the_text_and_each_fits(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert "".join(parts) == text
    assert all(0 < utf16_len(part) <= limit for part in parts)


@given(st.text(st.characters(max_codepoint=0xFFFF), max_size=400), limits)
def test_split_parts_are_at_least_half_full_except_the_last(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(len(part) >= limit // 2 for part in parts[:-1])


@pytest.mark.parametrize("limit", [TELEGRAM_TEXT_LIMIT, DISCORD_TEXT_LIMIT, SLACK_TEXT_LIMIT])
def test_platform_sized_text_splits_on_paragraphs(limit: int) -> None:
    paragraph = ("word " * (limit // 10)).strip()
    text = "\n\n".join([paragraph] * 5)
    parts = split_text(text, limit)
    assert "".join(parts) == text
    assert all(part.endswith("\n\n") for part in parts[:-1])
    assert all(utf16_len(part) <= limit for part in parts)


def test_split_prefers_paragraph_then_line_then_space() -> None:
    assert split_text("aaaa bbbb\ncccc\n\ndd", 16) == ("aaaa bbbb\ncccc\n\n", "dd")
    assert split_text("aaaa bbbb\ncccc dd", 16) == ("aaaa bbbb\n", "cccc dd")
    assert split_text("aaaa bbbb cccc dd", 16) == ("aaaa bbbb cccc ", "dd")


def test_split_cuts_mid_word_only_without_a_boundary_and_keeps_marks_with_letters() -> None:
    assert split_text("abcdefghij", 4) == ("abcd", "efgh", "ij")
    # "e" + combining acute must not be parted: the cut moves back before the "e".
    assert split_text("abce\u0301fg", 4) == ("abc", "e\u0301fg")


def test_split_counts_astral_characters_as_two_units() -> None:
    parts = split_text("😀" * 5, 4)
    assert parts == ("😀😀", "😀😀", "😀")


def test_split_of_empty_text_has_no_parts_and_tiny_limits_are_refused() -> None:
    assert split_text("", 10) == ()
    with pytest.raises(ValueError, match="limit"):
        split_text("abc", 1)


@given(st.integers(1, 100), st.floats(0, 1, exclude_max=True))
def test_delay_stays_within_half_and_whole_of_the_cap(attempts: int, share: float) -> None:
    policy = RetryPolicy(base_s=2.0, max_s=600.0)
    cap = policy.cap(attempts)
    assert cap / 2 <= policy.delay(attempts, lambda: share) <= cap <= 600.0


@given(st.integers(1, 80))
def test_the_cap_doubles_until_the_maximum(attempts: int) -> None:
    policy = RetryPolicy(base_s=1.0, max_s=300.0)
    assert policy.cap(attempts + 1) == min(300.0, 2 * policy.cap(attempts))


@given(st.integers(1, 20), st.floats(0, 1, exclude_max=True), st.floats(0, 10_000))
def test_delay_never_undercuts_retry_after(attempts: int, share: float, after: float) -> None:
    assert RetryPolicy().delay(attempts, lambda: share, after) >= min(after, 86400.0)


def test_jitter_comes_from_the_random_source() -> None:
    policy = RetryPolicy(base_s=4.0)
    assert policy.delay(1, lambda: 0.0) == 2.0
    assert policy.delay(1, lambda: 0.5) == 3.0
    assert policy.delay(3, lambda: 0.0) == 8.0


MESSAGE = OutboundMessage("e1", "telegram", "42", "hello")


def test_a_new_event_for_an_enabled_channel_is_pending_and_due_now() -> None:
    event = OutboxEvent.pending(MESSAGE, now=100.0)
    assert (event.status, event.next_attempt_at, event.attempts) == ("pending", 100.0, 0)
    assert event.message == MESSAGE
    assert event.address == "telegram:42"


def test_a_new_event_for_a_disabled_channel_is_queued_with_the_reason() -> None:
    event = OutboxEvent.queued(MESSAGE, now=100.0)
    assert event.status == "queued"
    assert event.next_attempt_at is None
    assert event.last_error == "channel 'telegram' is not enabled"


def test_a_retryable_failure_waits_then_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=1.0)
    event = OutboxEvent.pending(MESSAGE, now=0.0)
    for attempt in (1, 2):
        event = failed_attempt(
            claimed(event, 10.0),
            "HTTP 503",
            retryable=True,
            now=10.0,
            policy=policy,
            random=lambda: 0,
        )
        assert event.status == "pending"
        assert event.next_attempt_at == 10.0 + policy.cap(attempt) / 2
    event = failed_attempt(
        claimed(event, 20.0), "HTTP 503", retryable=True, now=20.0, policy=policy, random=lambda: 0
    )
    assert event.status == "failed"
    assert event.attempts == 3
    assert event.last_error == "HTTP 503 (gave up after 3 attempts)"


def test_a_permanent_failure_fails_at_once_and_keeps_progress() -> None:
    event = claimed(OutboxEvent.pending(MESSAGE, now=0.0), 0.0)
    after = failed_attempt(
        event,
        "HTTP 400 chat not found",
        retryable=False,
        now=1.0,
        policy=RetryPolicy(),
        random=lambda: 0.5,
        progress=2,
    )
    assert (after.status, after.progress, after.last_error) == (
        "failed",
        2,
        "HTTP 400 chat not found",
    )


def test_delivered_parked_and_retried() -> None:
    event = claimed(OutboxEvent.pending(MESSAGE, now=0.0), 0.0)
    done = delivered(event, now=5.0, steps=3)
    assert (done.status, done.delivered_at, done.progress, done.next_attempt_at) == (
        "delivered",
        5.0,
        3,
        None,
    )
    with pytest.raises(InvalidRequest, match="--force"):
        retried(done, now=9.0)
    again = retried(done, now=9.0, force=True)
    assert (again.status, again.attempts, again.progress, again.next_attempt_at) == (
        "pending",
        1,
        0,
        9.0,
    )
    assert (again.delivered_at, again.retried_from) == (5.0, 1)
    assert parked(event, 6.0).status == "queued"


def test_a_retried_event_gets_a_fresh_budget_and_keeps_its_count() -> None:
    """After an operator's retry the attempts made before still count on the event, and
    the policy's budget starts afresh."""
    policy = RetryPolicy(max_attempts=2)
    event = OutboxEvent.pending(MESSAGE, now=0.0)
    for _ in range(2):
        event = failed_attempt(
            claimed(event, 1.0),
            "HTTP 500",
            retryable=True,
            now=1.0,
            policy=policy,
            random=lambda: 0.0,
        )
    assert (event.status, event.attempts) == ("failed", 2)
    event = retried(event, now=2.0)
    assert (event.status, event.attempts, event.last_error) == (
        "pending",
        2,
        "HTTP 500 (gave up after 2 attempts)",
    )
    event = failed_attempt(
        claimed(event, 3.0), "HTTP 500", retryable=True, now=3.0, policy=policy, random=lambda: 0.0
    )
    assert (event.status, event.attempts) == ("pending", 3)


@given(st.integers(0, 5), st.sampled_from(["queued", "pending", "failed"]))
def test_retrying_an_undelivered_event_resumes_after_its_progress(
    progress: int, status: str
) -> None:
    assume(status != "delivered")
    event = OutboxEvent("x", "slack", "C1", "hi", (), status, 0.0, 4, progress)  # type: ignore[arg-type]
    assert retried(event, now=1.0).progress == progress


_statuses = st.sampled_from(["queued", "pending", "failed", "delivered"])


@given(_statuses, st.booleans(), st.none() | _times, _times)
def test_a_retry_never_makes_an_event_due_while_a_claim_on_it_holds(
    status: str, force: bool, claimed_until: float | None, now: float
) -> None:
    """Any retry gives a pending event or a NanobotError; an event a worker holds is
    refused for as long as the claim lasts, forced or not."""
    event = OutboxEvent("x", "slack", "C1", "hi", (), status, 0.0, 1)  # type: ignore[arg-type]
    held = status == "pending" and claimed_until is not None and claimed_until > now
    if held:
        assert claimed_until is not None
        with pytest.raises(RetryLater, match=r"^Event x is being delivered right now") as refused:
            retried(event, now, force=force, claimed_until=claimed_until)
        assert refused.value.retry_after_s == claimed_until - now
        return
    try:
        again = retried(event, now, force=force, claimed_until=claimed_until)
    except NanobotError:
        assert (status, force) == ("delivered", False)
        return
    assert (again.status, again.next_attempt_at) == ("pending", now)


@given(st.text(), st.integers(min_value=3, max_value=300))
def test_shorten_keeps_short_texts_and_cuts_long_ones_to_the_limit(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short) <= limit
    assert short == text if len(text) <= limit else short == text[: limit - 3] + "..."
