"""Test an agent through the real HTTP app, in process.

    from nanobot_api.testing import Harness

    async def test_hello() -> None:
        async with Harness(my_agent) as h:
            result = await h.chat("hi", session_id="a", stream=True)
            assert result.ok and result.text == "..."

With nanobot-api installed, pytest also gets the ``nanobot_harness`` fixture
(:mod:`nanobot_api.testing.plugin`): ``async with nanobot_harness(my_agent) as h:``
keeps the workspace under the test's ``tmp_path``.
"""

from __future__ import annotations

from nanobot_api.testing.in_process import (
    ApiError,
    ChatFailed,
    ChatResult,
    FileSpec,
    Harness,
    HarnessFactory,
    HttpResult,
)

__all__ = [
    "Harness",
    "ChatResult",
    "HttpResult",
    "ApiError",
    "ChatFailed",
    "FileSpec",
    "HarnessFactory",
]
