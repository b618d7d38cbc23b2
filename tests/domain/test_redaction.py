"""The one redactor: whole texts and texts that arrive in pieces."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.domain.conversation import Message, TurnRecord, bounded_history, turn_size
from nanobot_api.domain.redaction import Redactor
from nanobot_api.domain.turns import ReplyBound

_ALPHABET = "abcks-_0123 "
secrets_ = st.lists(st.text(alphabet=_ALPHABET, min_size=4, max_size=12), max_size=4)


def test_every_secret_is_masked_longest_first() -> None:
    redact = Redactor.of(["sk-abcd", "sk-abcd-longer"], ["hdr-value"])
    assert redact("sk-abcd-longer / sk-abcd / hdr-value") == "*** / *** / ***"


def test_short_and_empty_values_are_not_secrets() -> None:
    redact = Redactor.of(["", "yes", "1"])
    assert not redact
    assert redact("yes 1") == "yes 1"


def test_a_secret_split_across_pieces_is_held_until_it_is_whole() -> None:
    stream = Redactor.of(["sk-SECRET-1"]).stream()
    assert stream.feed("key: sk-SE") == "key: "
    assert stream.feed("CRET-1 ok") == "*** ok"
    assert stream.feed(" sk") == " "
    assert stream.feed("y") == "sky"
    assert stream.flush() == ""


def test_a_held_tail_is_let_go_at_the_end() -> None:
    stream = Redactor.of(["sk-SECRET-1"]).stream()
    assert stream.feed("ends with sk-SEC") == "ends with "
    assert stream.flush() == "sk-SEC"


@given(secrets_, st.lists(st.text(alphabet=_ALPHABET, max_size=20), max_size=8))
def test_pieces_leak_no_secret_and_lose_no_text(secrets: list[str], pieces: list[str]) -> None:
    redactor = Redactor.of(secrets)
    stream = redactor.stream()
    out = "".join(stream.feed(piece) for piece in pieces) + stream.flush()
    whole = "".join(pieces)
    assert out == redactor(whole) or len(redactor.secrets) > 1  # overlaps may differ
    for secret in redactor.secrets:
        assert secret not in out


def _turn(text: str) -> TurnRecord:
    return TurnRecord((Message.user(text), Message.assistant(text)))


def test_history_is_bounded_by_bytes_dropping_the_oldest_whole_turns() -> None:
    history = (_turn("a" * 400), _turn("é" * 100), _turn("c" * 50))
    assert [turn_size(t) for t in history] == [800, 400, 100]
    assert bounded_history(history, max_bytes=1300) == history
    assert bounded_history(history, max_bytes=1299) == history[1:]
    assert bounded_history(history, max_bytes=499) == history[2:]
    assert bounded_history(history, max_bytes=99) == ()
    assert bounded_history(history, max_messages=4, max_bytes=10_000) == history[1:]


@given(st.lists(st.text(max_size=30), max_size=12), st.integers(min_value=0, max_value=400))
def test_bytes_alone_keep_the_longest_suffix_that_fits(texts: list[str], max_bytes: int) -> None:
    """The bytes-only bound (every turn's case) keeps what the general walk keeps."""
    history = tuple(_turn(text) for text in texts)
    kept = bounded_history(history, max_bytes=max_bytes)
    assert kept == bounded_history(history, max_messages=10**9, max_bytes=max_bytes)
    assert sum(turn_size(t) for t in kept) <= max_bytes
    assert kept == history[len(history) - len(kept) :]
    if len(kept) < len(history):
        assert sum(turn_size(t) for t in history[len(history) - len(kept) - 1 :]) > max_bytes


def test_a_reply_over_its_bound_is_cut_with_a_marker() -> None:
    bound = ReplyBound(10)
    assert bound.cut("short") == "short"
    assert (
        bound.cut("x" * 11) == "x" * 10 + "\n\n[reply cut: it reached the limit of 10 characters]"
    )
