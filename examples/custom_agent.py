"""A custom agent in a few lines, behind the OpenAI-compatible API.

Run it:  .venv/bin/python examples/custom_agent.py   (then talk to http://127.0.0.1:8900/v1)
Test it: examples/test_custom_agent.py runs it in process with the harness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nanobot_api import Turn, Usage, agent, serve


@agent(model="counter")
async def counter(turn: Turn) -> AsyncIterator[str | Usage]:
    """Streams the message back word by word and says how many turns came before."""
    for word in turn.text.split():
        yield f"{word} "
    yield f"(turn {len(turn.history) + 1} of session {turn.session.session_id})"
    yield Usage(prompt_tokens=len(turn.text.split()), completion_tokens=1)


if __name__ == "__main__":
    serve(counter)  # until Ctrl-C; serve(counter, port=9000, api_key="...") to change
