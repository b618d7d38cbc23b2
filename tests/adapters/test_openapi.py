"""/openapi.json: a valid OpenAPI 3.1 document, generated from the wire classes, that
describes what the server really answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openapi_spec_validator import validate as validate_spec

from nanobot_api import Turn, UpstreamFailed, agent
from nanobot_api.adapters.http import wire
from nanobot_api.adapters.http.openapi import openapi_document
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.domain.requests import HistoryMode
from nanobot_api.testing import ChatResult, Harness, HttpResult

Document = dict[str, Any]


@agent(model="doc-agent")
async def echo(turn: Turn) -> AsyncIterator[str]:
    if turn.text == "fail":
        raise UpstreamFailed("Upstream model error: HTTP 503")
    if turn.text == "crash":
        raise RuntimeError("a bug")
    yield "echo: "
    yield turn.text


def check(document: Document, schema: Document, instance: object) -> None:
    """Validates ``instance`` against ``schema``, resolving refs inside ``document``."""
    Draft202012Validator({**schema, "components": document["components"]}).validate(instance)


def answer_schema(
    document: Document, path: str, method: str, status: int, media: str = "application/json"
) -> Document:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    schema: Document = responses[str(status)]["content"][media]["schema"]
    return schema


def conforms(document: Document, path: str, method: str, answer: HttpResult | ChatResult) -> None:
    """The answer's status, body and headers are as the document says."""
    response = document["paths"][path][method]["responses"][str(answer.status)]
    for header in response.get("headers", {}):
        assert header in answer.headers, f"{header} missing from {answer.status}"
    if isinstance(answer, ChatResult) and answer.streamed:
        event = response["content"]["text/event-stream"]["schema"]
        for data in _data(answer):
            check(document, event, {"event": "message", "data": data})
            # contentSchema is an annotation to jsonschema: the JSON inside is checked here.
            if data != "[DONE]":
                payload = json.loads(data)
                name = "Error" if "error" in payload else "ChatCompletionChunk"
                check(document, {"$ref": f"#/components/schemas/{name}"}, payload)
        return
    body = json.loads(answer.body)
    check(document, answer_schema(document, path, method, answer.status), body)


def _data(answer: ChatResult) -> list[str]:
    events = answer.body.decode().split("\n\n")
    return [e.removeprefix("data: ") for e in events if e.startswith("data: ")]


@pytest.mark.parametrize("history", ["reject", "latest"])
@pytest.mark.parametrize("api_key", ["", "sk-doc"])
def test_the_document_is_valid_openapi_3_1(history: HistoryMode, api_key: str) -> None:
    document = openapi_document("m", HttpSettings(api_key=api_key, history=history))
    validate_spec(document)
    assert document["openapi"] == "3.1.0"
    assert ("security" in document) == bool(api_key)
    assert document["paths"]["/health"]["get"]["security"] == []


def test_request_schemas_are_generated_from_the_wire_classes() -> None:
    schemas = openapi_document("m", HttpSettings())["components"]["schemas"]
    for cls in (wire.ChatBody, wire.UserMessage, wire.StreamOptions, wire.FileData):
        assert set(schemas[cls.__name__]["properties"]) >= {f.name for f in attrs.fields(cls)}
    parts = schemas["UserMessage"]["properties"]["content"]["anyOf"][1]["items"]
    assert parts["discriminator"]["propertyName"] == "type"
    assert set(parts["discriminator"]["mapping"]) == {"text", "image_url", "file"}
    assert schemas["TextPart"]["properties"]["type"] == {"const": "text"}
    assert schemas["FileData"]["required"] == ["file_data"]  # filename has a default
    assert schemas["ChatBody"]["properties"]["stream"] == {"type": ["boolean", "null"]}


async def test_the_app_serves_the_document_it_was_built_with() -> None:
    async with Harness(echo, api_key="k") as h:
        served = (await h.get("/openapi.json")).json()
        refused = await h.get("/openapi.json", headers={"Authorization": "Bearer no"})
    assert served == openapi_document("doc-agent", HttpSettings(api_key="k"))
    assert refused.status == 401


async def test_live_answers_match_the_document() -> None:
    async with Harness(echo, api_key="k", max_file_mb=1, timeout=5) as h:
        document = (await h.get("/openapi.json")).json()
        chat = "/v1/chat/completions"
        answers: list[tuple[str, str, HttpResult | ChatResult]] = [
            ("/health", "get", await h.get("/health")),
            ("/v1/models", "get", await h.get("/v1/models")),
            ("/v1/models/{model_id}", "get", await h.get("/v1/models/doc-agent")),
            ("/v1/models/{model_id}", "get", await h.get("/v1/models/other")),
            ("/v1/models", "get", await h.get("/v1/models", headers={"Authorization": "x"})),
            ("/v1/models", "get", await h.request("POST", "/v1/models")),
            (chat, "post", await h.chat("hi", session_id="a")),
            (chat, "post", await h.chat("hi", stream=True, include_usage=True)),
            (chat, "post", await h.chat("fail", stream=True)),
            (chat, "post", await h.chat("fail")),
            (chat, "post", await h.chat("crash")),
            (chat, "post", await h.chat("hi", model="other")),
            (chat, "post", await h.send({"messages": "hi"})),
            (chat, "post", await h.chat("x", files=[("a.txt", b"a" * (1024 * 1024 + 1))])),
            (chat, "post", await h.chat("x", files=[("a.exe", b"MZ" + bytes(64))])),
            (chat, "post", await h.chat("x", files=[("a.txt", b"text")])),
        ]
    statuses = [answer.status for _, _, answer in answers]
    assert statuses == [
        200,
        200,
        200,
        404,
        401,
        405,
        200,
        200,
        200,
        502,
        500,
        400,
        400,
        413,
        415,
        200,
    ]
    for path, method, answer in answers:
        conforms(document, path, method, answer)


async def test_a_timed_out_turn_answers_the_documented_504() -> None:
    @agent(model="slow")
    async def slow(turn: Turn) -> str:
        import anyio

        await anyio.sleep(5)
        return "late"

    async with Harness(slow, timeout=0.05) as h:
        document = (await h.get("/openapi.json")).json()
        answer = await h.chat("x")
    assert answer.status == 504
    conforms(document, "/v1/chat/completions", "post", answer)


# ---- bodies: the server accepts what the schema allows, refuses what it does not -------

# ASCII text: the schema's pattern states "printable" for control characters only.
_TEXT = st.text(st.characters(codec="ascii"), max_size=4)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), _TEXT, st.just([]), st.just({}))
_PRINTABLE = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1)
_PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT}), max_size=2)
_VALID = st.fixed_dictionaries(
    {
        "messages": st.tuples(
            st.fixed_dictionaries({"role": st.just("user"), "content": st.one_of(_TEXT, _PARTS)})
        ).map(list)
    },
    optional={
        "model": st.sampled_from(["doc-agent", None]),
        "session_id": st.one_of(st.none(), _PRINTABLE),
        "stream": st.one_of(st.none(), st.booleans()),
        "stream_options": st.one_of(
            st.none(), st.fixed_dictionaries({"include_usage": st.one_of(st.none(), st.booleans())})
        ),
        "temperature": _VALUES,
    },
)
# Where a valid body may go wrong: a top-level field, the message, its content or a part.
_SPOTS = st.sampled_from(
    ["model", "session_id", "stream", "stream_options", "messages", "message", "content", "part"]
)


@st.composite
def _bodies(draw: st.DrawFn) -> Document:
    body: Document = draw(_VALID)
    if draw(st.booleans()):
        return body
    spot, value = draw(_SPOTS), draw(_VALUES)
    message = body["messages"][0]
    if spot == "message":
        message["role"] = draw(st.sampled_from(["system", "assistant", 1, None]))
    elif spot == "content":
        message["content"] = value
    elif spot == "part":
        message["content"] = [{"type": draw(st.sampled_from(["text", "audio", 3])), "text": value}]
    else:
        body[spot] = value
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies())
async def test_a_body_is_accepted_exactly_when_the_schema_allows_it(body: Document) -> None:
    document = openapi_document("doc-agent", HttpSettings())
    request = {"$ref": "#/components/schemas/ChatCompletionRequest"}
    valid = Draft202012Validator({**request, "components": document["components"]}).is_valid(body)
    async with Harness(echo) as h:
        answer = await h.send(body)
    assert answer.status in (200, 400), answer.body
    # The model is pinned and the text decides nothing here, so type rules are the rule.
    assert (answer.status == 200) == valid, (body, answer.error)


async def test_stream_options_must_be_an_object() -> None:
    async with Harness(echo) as h:
        answer = await h.send(
            {"messages": [{"role": "user", "content": "x"}], "stream_options": "x"}
        )
    assert answer.status == 400
