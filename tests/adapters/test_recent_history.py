from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.storage.recent import RecentHistory
from nanobot_api.domain.conversation import Message, TurnRecord, bounded_history


def record(size: int, tag: int) -> TurnRecord:
    return TurnRecord(tuple(Message.user(f"{tag}.{i}") for i in range(size)))


@given(
    st.lists(st.integers(min_value=1, max_value=6), max_size=30),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5),
    st.integers(min_value=2, max_value=20),
)
def test_a_kept_tail_extended_by_commits_equals_bounding_the_whole_history(
    sizes: list[int], appended: list[int], max_messages: int
) -> None:
    whole = tuple(record(n, i) for i, n in enumerate(sizes))
    recent = RecentHistory()
    recent.put("k", max_messages, bounded_history(whole, max_messages), recent.token("k"))
    for n in appended:
        new = record(n, len(whole))
        recent.appended("k", new, recent.writing("k"))
        whole = (*whole, new)
        kept = bounded_history(whole, max_messages)
        assert recent.get("k", max_messages) == kept
