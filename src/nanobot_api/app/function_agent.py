"""Plain async functions as agents: ``agent(fn, model=...)`` or ``@agent(model=...)``.

A library user who only wants "text in, text out" should not have to learn the Reply
port or write a class. The function receives the Turn and either returns the whole
answer (``async def``) or yields it piece by piece (``async def`` with ``yield``); each
piece reaches a streaming client as soon as it is yielded. Yielding a :class:`Usage`
instead of text reports the tokens a model call used.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias, overload

from nanobot_api.domain.conversation import Usage
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.turns import Turn

AgentFunction: TypeAlias = Callable[[Turn], Awaitable[str | None] | AsyncIterator[str | Usage]]


class FunctionAgent:
    """An Agent whose answer comes from one async function (see :func:`agent`)."""

    def __init__(self, fn: AgentFunction, model: str) -> None:
        if not callable(fn):
            raise TypeError(f"agent() needs an async function, got {type(fn).__name__}")
        if inspect.isfunction(fn) and not (
            inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        ):
            # A plain def would block the event loop that serves every other session.
            raise TypeError(f"agent() needs an async function: make {fn.__name__} 'async def'")
        if not model:
            raise ValueError("agent() needs a non-empty model id")
        self._fn = fn
        self._model = model
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__

    @property
    def model(self) -> str:
        return self._model

    async def respond(self, turn: Turn, reply: Reply) -> None:
        result = self._fn(turn)
        if inspect.isawaitable(result):
            text = await result
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{self!r} returned {type(text).__name__}, not str")
            await reply.send(text or "")
            return
        if not hasattr(result, "__aiter__"):
            raise TypeError(f"{self!r} returned {type(result).__name__}, not an async iterator")
        try:
            async for piece in result:
                if isinstance(piece, Usage):
                    reply.add_usage(piece)
                elif isinstance(piece, str):
                    await reply.send(piece)
                else:
                    raise TypeError(f"{self!r} yielded {type(piece).__name__}, not str or Usage")
        finally:
            # A cancelled turn (client gone, time budget spent) runs the generator's
            # finally blocks now, not whenever the garbage collector gets to it.
            close = getattr(result, "aclose", None)
            if close is not None:
                await close()

    def __repr__(self) -> str:
        name = getattr(self._fn, "__qualname__", type(self._fn).__name__)
        return f"<agent {name} model={self._model!r}>"


def _default_model(fn: object) -> str:
    return str(getattr(fn, "__name__", "agent")).strip("_").replace("_", "-") or "agent"


@overload
def agent(fn: AgentFunction, *, model: str | None = None) -> FunctionAgent: ...


@overload
def agent(
    fn: None = None, *, model: str | None = None
) -> Callable[[AgentFunction], FunctionAgent]: ...


def agent(
    fn: AgentFunction | None = None, *, model: str | None = None
) -> FunctionAgent | Callable[[AgentFunction], FunctionAgent]:
    """Makes an Agent of an async function, directly or as a decorator.

    ``fn(turn)`` either returns the whole answer as a ``str`` (``async def``), or
    yields it in pieces (``async def`` with ``yield``): each ``str`` is streamed to
    the client at once, each :class:`Usage` is added to the turn's token count.
    ``model`` is the id clients see in ``/v1/models`` and may pin; it defaults to the
    function's name with ``_`` as ``-``.

    Usable as ``agent(reply, model="m")``, ``@agent`` or ``@agent(model="m")``.
    Raises TypeError for a function that is not ``async def``.
    """

    def wrap(function: AgentFunction) -> FunctionAgent:
        return FunctionAgent(function, model or _default_model(function))

    return wrap if fn is None else wrap(fn)
