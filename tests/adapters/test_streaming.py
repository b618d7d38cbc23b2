"""The bytes of a stream's content events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.http.answers import chunk_json
from nanobot_api.adapters.http.streaming import ContentEvents, sse

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(texts, texts.filter(bool), st.sampled_from(["chatcmpl-1", "x"]))
def test_a_content_event_is_the_whole_chunk_rendered_once(
    text: str, model: str, completion_id: str
) -> None:
    """The pre-rendered event equals the chunk built and encoded whole, for any model."""
    events = ContentEvents(completion_id, 1700000000, model)
    assert events.content(text) == sse(
        chunk_json(completion_id, 1700000000, model, {"content": text})
    )


def test_a_model_named_like_the_mark_still_gets_exact_events() -> None:
    events = ContentEvents("c", 1, "nanobot-delta-mark")
    assert events.content("hi") == sse(chunk_json("c", 1, "nanobot-delta-mark", {"content": "hi"}))
