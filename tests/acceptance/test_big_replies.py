"""A model that talks too much cannot break a session, over a real socket with the real
LLM agent on SQLite: a reply is cut at ``agents.defaults.maxReplyChars`` with a marker
and still answered, and what history sends upstream is held to 2 MiB."""

from __future__ import annotations

from pathlib import Path

from nanobot_api.app.config import AgentDefaults
from nanobot_api.domain.conversation import MAX_HISTORY_BYTES
from tests.acceptance.test_client_requests import MODEL, served, stored
from tests.upstream import ScriptedUpstream, Text


def chatter(letter: str, chars: int) -> Text:
    """A reply of ``chars`` times ``letter``, streamed in pieces of 10,000."""
    return Text(letter * chars, pieces=(letter * 10_000,) * (chars // 10_000))


async def test_a_long_reply_is_cut_with_a_marker_answered_and_stored_cut(
    tmp_path: Path,
) -> None:
    cut = "\n\n[reply cut: it reached the limit of 5,000 characters]"
    async with (
        ScriptedUpstream([chatter("y", 50_000), chatter("z", 50_000)]) as up,
        served(tmp_path, up, AgentDefaults(model=MODEL, max_reply_chars=5000)) as client,
    ):
        session = {"session_id": "talky"}
        whole = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "talk"}], extra_body=session
        )
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "talk more"}],
            stream=True,
            extra_body=session,
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        after = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "and now?"}], extra_body=session
        )
        assert after.choices[0].message.content == "echo: and now?"
        # The next turn's history holds the replies as cut, marker and all.
        sent = [m["content"] for m in up.received[2].messages if m["role"] == "assistant"]
    assert whole.choices[0].message.content == "y" * 5000 + cut
    assert streamed == "z" * 5000 + cut
    assert sent == ["y" * 5000 + cut, "z" * 5000 + cut]
    history = await stored(tmp_path, "talky")
    assert [t.messages[-1].content for t in history] == [
        "y" * 5000 + cut,
        "z" * 5000 + cut,
        "echo: and now?",
    ]


async def test_history_sent_upstream_stays_under_2_mib_however_big_the_turns(
    tmp_path: Path,
) -> None:
    """Five replies of 900,000 characters (4.5 MB of history): every turn answers, and
    each request upstream carries at most 2 MiB of history, the newest whole turns."""
    replies = [chatter(letter, 900_000) for letter in "abcde"]
    async with (
        ScriptedUpstream(replies) as up,
        served(tmp_path, up, AgentDefaults(model=MODEL, max_reply_chars=1_000_000)) as client,
    ):
        for i in range(6):
            answer = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"turn {i}"}]
            )
        assert answer.choices[0].message.content == "echo: turn 5"
    # The first request holds no history: the rest of a body (system prompt, tools,
    # the user message) is that size, and the JSON around each message is small.
    bound = up.received[0].size + MAX_HISTORY_BYTES + 100 * len(up.received[-1].messages)
    assert all(r.size <= bound for r in up.received), [r.size for r in up.received]
    assert max(r.size for r in up.received) > 1024 * 1024
    kept = [m["content"][0] for m in up.received[-1].messages if m["role"] == "assistant"]
    assert kept == ["d", "e"]
    assert len(await stored(tmp_path, "default")) == 6
