"""Plain async functions become agents: returned text, yielded pieces, usage, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from nanobot_api import Turn, Usage, agent
from nanobot_api.domain.sessions import api_session
from nanobot_api.testing import Harness
from tests.fakes import CollectingReply

TURN = Turn(api_session("t"), "one two")


async def test_a_coroutine_function_answers_with_its_return_value() -> None:
    async def reply(turn: Turn) -> str:
        return turn.text.upper()

    made = agent(reply, model="upper")
    collected = CollectingReply()
    await made.respond(TURN, collected)
    assert (made.model, collected.deltas) == ("upper", ["ONE TWO"])


async def test_an_async_generator_streams_its_pieces_and_reports_usage() -> None:
    @agent
    async def split_words(turn: Turn) -> AsyncIterator[str | Usage]:
        for word in turn.text.split():
            yield word
        yield Usage(2, 2)
        yield Usage(1, 0)

    collected = CollectingReply()
    await split_words.respond(TURN, collected)
    assert split_words.model == "split-words"
    assert collected.deltas == ["one", "two"]
    assert collected.usage == Usage(3, 2)


async def test_the_decorator_takes_a_model_id() -> None:
    @agent(model="m-1")
    async def answer(turn: Turn) -> str:
        return "x"

    assert answer.model == "m-1"


def test_a_plain_function_is_refused_at_once() -> None:
    def blocking(turn: Turn) -> str:
        return "x"

    with pytest.raises(TypeError, match="async def"):
        agent(blocking)  # type: ignore[arg-type]


async def test_a_wrong_value_is_a_type_error_which_the_server_answers_500() -> None:
    async def number(turn: Turn) -> int:
        return 3

    async with Harness(agent(number, model="n")) as h:  # type: ignore[arg-type]
        result = await h.chat("hi")
    assert result.status == 500
    assert result.error is not None
    assert result.error.message == "Internal server error"


async def test_a_cancelled_generator_runs_its_cleanup_at_once() -> None:
    cleaned = anyio.Event()
    started = anyio.Event()

    @agent
    async def slow(turn: Turn) -> AsyncIterator[str]:
        try:
            yield "start"
            started.set()
            await anyio.sleep_forever()
            yield "never"
        finally:
            cleaned.set()

    async with anyio.create_task_group() as group:
        group.start_soon(slow.respond, TURN, CollectingReply())
        await started.wait()
        group.cancel_scope.cancel()
    assert cleaned.is_set()


async def test_an_empty_answer_gets_the_servers_fallback_text() -> None:
    async def nothing(turn: Turn) -> None:
        return None

    async with Harness(nothing) as h:
        result = await h.chat("hi")
    assert result.text.startswith("I completed the tool steps but couldn't produce")
