"""The SSE decoder gives the same events however the bytes are cut."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.llm.sse import SseDecoder

STREAM = (
    ': keep-alive\n\ndata: {"a": "\u2028é"}\n\n'
    "data: line one\ndata: line two\r\n\r\n"
    "event: ignored\rdata: cr only\r\r"
    "data: [DONE]\n\n"
).encode()
EVENTS = ['{"a": "\u2028é"}', "line one\nline two", "cr only", "[DONE]"]


def decode(chunks: list[bytes]) -> list[str]:
    decoder = SseDecoder()
    events: list[str] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def test_whole_stream() -> None:
    assert decode([STREAM]) == EVENTS


def test_every_single_cut() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EVENTS, cut


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EVENTS


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_cuts(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert decode([STREAM[a:b] for a, b in itertools.pairwise(points)]) == EVENTS


def test_a_last_event_without_a_blank_line_is_flushed_on_close() -> None:
    assert decode([b"data: tail"]) == ["tail"]


# Every line ending in LF, as providers send them (the decoder's fast path).
LF_STREAM = (
    ': keep-alive\n\ndata: {"a": "\u2028é"}\n\n'
    "data: line one\ndata:line two\n\n"
    "event: ignored\nid: 7\ndata\n\n"
    "data: [DONE]\n\n"
).encode()
LF_EVENTS = ['{"a": "\u2028é"}', "line one\nline two", "", "[DONE]"]


@given(st.lists(st.integers(0, len(LF_STREAM)), max_size=12))
def test_any_cuts_of_a_stream_of_lf_lines(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(LF_STREAM)]
    assert decode([LF_STREAM[a:b] for a, b in itertools.pairwise(points)]) == LF_EVENTS
