from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobot_api.adapters.llm.openai_wire import message_json
from nanobot_api.adapters.llm.request_encoder import RequestEncoder
from nanobot_api.domain.attachments import Document, Image
from nanobot_api.domain.conversation import History, Message, ToolCall, TurnRecord, bounded_history
from nanobot_api.domain.models import ModelRequest, ToolSpec, UserContent

CALL = ToolCall("call_1", "lookup", '{"q": "x"}')
SYSTEM = Message("system", "Be brief.")
HISTORY: History = (
    TurnRecord((Message.user("first — with ünïcode"), Message.assistant("one"))),
    TurnRecord(
        (
            Message.user("second"),
            Message.assistant(None, (CALL,)),
            Message.tool_result("call_1", "result"),
            Message.assistant("answer"),
        )
    ),
)
NEW = UserContent.of_turn(
    "look",
    (Image(b"\x89PNG...", "image/png", "/m/a.png"),),
    (Document("r.txt", "text of r", "/m/r.txt"),),
)
TOOL = ToolSpec("lookup", "Looks up.", {"type": "object", "properties": {}})


def sent_messages(body: bytes) -> list[object]:
    messages = json.loads(body)["messages"]
    assert isinstance(messages, list)
    return messages


def expected_messages(request: ModelRequest) -> list[object]:
    return [message_json(m) for m in request.conversation]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [(), (TOOL,)])
@pytest.mark.parametrize("system", [None, SYSTEM])
@pytest.mark.parametrize("history", [(), HISTORY])
@pytest.mark.parametrize("messages", [(), (NEW,), (NEW, Message.assistant(None, (CALL,)))])
def test_the_encoded_body_is_the_request_body(
    stream: bool,
    tools: tuple[ToolSpec, ...],
    system: Message | None,
    history: History,
    messages: tuple[Message | UserContent, ...],
) -> None:
    request = ModelRequest(messages, tools, history=history, system=system)
    expected: dict[str, object] = {"model": "m", "messages": expected_messages(request)}
    if tools:
        expected["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
    if stream:
        expected |= {"stream": True, "stream_options": {"include_usage": True}}
    encoder = RequestEncoder()
    for _ in range(2):  # the second time from the encoder's memory
        assert json.loads(encoder.encode("m", request, stream=stream)) == expected
    assert json.loads(encoder.encode("m2", request, stream=stream))["model"] == "m2"


def test_the_conversation_is_system_then_history_then_the_turns_messages() -> None:
    request = ModelRequest((NEW,), history=HISTORY, system=SYSTEM)
    assert request.conversation == (
        SYSTEM,
        *HISTORY[0].messages,
        *HISTORY[1].messages,
        NEW,
    )


def test_a_turn_without_messages_adds_nothing_to_the_body() -> None:
    history = (HISTORY[0], TurnRecord(()), HISTORY[1])
    encoder = RequestEncoder()
    request = ModelRequest((NEW,), history=history)
    assert sent_messages(encoder.encode("m", request, stream=False)) == expected_messages(request)


# What the window memory must survive: sessions taking turns in any order, a bound that
# drops old turns, a regenerated turn (the newest dropped, then replaced), a restart (the
# same turns as new objects), and memory limits small enough to be hit.
_Step = tuple[int, str]


@st.composite
def _steps(draw: st.DrawFn) -> list[_Step]:
    kinds = st.sampled_from(["turn", "turn", "turn", "tools", "regenerate", "reload", "empty"])
    return draw(st.lists(st.tuples(st.integers(0, 2), kinds), max_size=40))


@settings(max_examples=150, deadline=None)
@given(
    steps=_steps(),
    bound=st.integers(1, 9),
    max_windows=st.integers(1, 4),
)
def test_every_body_holds_the_history_it_was_given(
    steps: list[_Step], bound: int, max_windows: int
) -> None:
    encoder = RequestEncoder(max_windows=max_windows)
    sessions: dict[int, History] = {}
    for number, (session, kind) in enumerate(steps):
        held = sessions.get(session, ())
        history = bounded_history(held, bound)
        if kind == "regenerate" and history:
            history = history[:-1]
        if kind == "reload":  # a restart: equal turns, new objects
            held = tuple(TurnRecord(tuple(t.messages)) for t in held)
            history = bounded_history(held, bound)
        request = ModelRequest((Message.user(f"q{number}"),), history=history, system=SYSTEM)
        assert sent_messages(encoder.encode("m", request, stream=False)) == expected_messages(
            request
        )
        if kind == "tools":  # a second call of the same turn, with the same history
            again = ModelRequest(
                (Message.user(f"q{number}"), Message.assistant(None, (CALL,))),
                history=history,
                system=SYSTEM,
            )
            body = encoder.encode("m", again, stream=True)
            assert sent_messages(body) == expected_messages(again)
        turn = TurnRecord(
            () if kind == "empty" else (Message.user(f"q{number}"), Message.assistant(f"a{number}"))
        )
        if kind == "regenerate" and held:
            held = held[:-1]
        sessions[session] = (*held, turn)


def turn(text: str) -> TurnRecord:
    return TurnRecord((Message.user(text), Message.assistant(f"re: {text}")))


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # the next window drops an empty turn from its front along with another
        ((turn("a"), TurnRecord(()), turn("b")), "drop two"),
        # the same second-newest turn, but different turns before it
        ((turn("a"), turn("b")), "other past"),
    ],
)
def test_a_window_is_reused_only_for_the_history_it_holds(first: History, then: str) -> None:
    encoder = RequestEncoder()
    request = ModelRequest((NEW,), history=first)
    assert sent_messages(encoder.encode("m", request, stream=False)) == expected_messages(request)
    newest = turn("new")
    past = () if then == "drop two" else (turn("other"),)
    history = (*past, first[-1], newest)
    request = ModelRequest((NEW,), history=history)
    assert sent_messages(encoder.encode("m", request, stream=False)) == expected_messages(request)
