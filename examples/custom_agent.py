"""A custom agent in a few lines, behind the OpenAI-compatible API.

Run it:  .venv/bin/python examples/custom_agent.py [PORT]   (default http://127.0.0.1:8900/v1)
Test it: examples/test_custom_agent.py runs it in process with the harness.
"""

from __future__ import annotations

import sys
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
    # Until Ctrl-C. serve() takes config.json's api keys: api_key=..., timeout=...
    serve(counter, port=int(sys.argv[1]) if len(sys.argv) > 1 else 8900)
