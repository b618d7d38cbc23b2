"""nanobot-api: an OpenAI-compatible HTTP API in front of a stateful agent.

As a library it puts your own agent behind the same API ``nanobot serve`` runs::

    from nanobot_api import Turn, agent, serve

    @agent(model="shouter")
    async def shout(turn: Turn) -> str:
        return turn.text.upper()

    serve(shout)  # http://127.0.0.1:8900/v1 until Ctrl-C

An agent is anything with a ``model`` id and ``async respond(turn, reply)`` (the
:class:`Agent` protocol), or a plain async function made into one by :func:`agent`.
In-process testing lives in :mod:`nanobot_api.testing`.

Importing this module is cheap: Quart, Hypercorn and the document readers load when
an app is first created.
"""

from __future__ import annotations

from nanobot_api.app.function_agent import agent
from nanobot_api.app.wiring.library import create_app, serve
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import Message, Usage
from nanobot_api.domain.errors import InvalidRequest, NanobotError, UpstreamFailed
from nanobot_api.domain.ports import Agent, Reply
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import Turn

__all__ = [
    # Writing an agent: the protocol, what it is given, and what it may raise.
    "Agent",
    "Reply",
    "Turn",
    "SessionKey",
    "Message",
    "Image",
    "Document",
    "Usage",
    "NanobotError",
    "InvalidRequest",
    "UpstreamFailed",
    # Running it.
    "agent",
    "create_app",
    "serve",
]
