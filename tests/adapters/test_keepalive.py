"""The keep-alive comments of an event stream: written only while it is silent."""

from __future__ import annotations

import anyio

from nanobot_api.adapters.http.streaming import KEEPALIVE, EventWriter


async def test_a_silent_stream_gets_a_comment_each_period_and_none_after_it_ends() -> None:
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    stream = EventWriter(write, 0.01)
    await stream.write(b"data: 1\n\n")
    await anyio.sleep(0.1)
    stream.stop()
    comments = written.count(KEEPALIVE)
    assert written[0] == b"data: 1\n\n"
    assert 3 <= comments <= 11
    await anyio.sleep(0.05)
    assert written.count(KEEPALIVE) == comments


async def test_a_stream_that_keeps_writing_gets_no_comment() -> None:
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    stream = EventWriter(write, 0.05)
    for n in range(20):
        await stream.write(b"data: %d\n\n" % n)
        await anyio.sleep(0.005)
    stream.stop()
    assert KEEPALIVE not in written


async def test_a_client_too_slow_to_take_a_comment_is_not_sent_more() -> None:
    taken = anyio.Event()
    attempts: list[bytes] = []

    async def write(data: bytes) -> None:
        attempts.append(data)
        await taken.wait()  # the client reads nothing

    stream = EventWriter(write, 0.01)
    await anyio.sleep(0.1)
    assert attempts == [KEEPALIVE]
    taken.set()  # it reads at last: what was held back is not sent all at once
    await anyio.sleep(0.005)
    stream.stop()
    assert len(attempts) <= 2


async def test_a_period_of_zero_writes_no_comment() -> None:
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    stream = EventWriter(write, 0)
    await anyio.sleep(0.05)
    stream.stop()
    assert written == []
