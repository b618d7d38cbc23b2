"""The OpenAI wire format coming in: chat request bodies, JSON or multipart fields.

Lenient where OpenAI clients send fields we do not use (ignored), strict on the
type of every field we read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn
from cattrs.strategies import configure_tagged_union

from nanobot_api.adapters.http.lifted import LiftedFile
from nanobot_api.domain.attachments import Upload, UploadLimits, check_file_count, upload_from_url
from nanobot_api.domain.branches import NO_IDS, MessageIds, Shown, shown_conversation
from nanobot_api.domain.client import (
    TurnOptions,
    check_n,
    client_tools,
    response_format_of,
    tool_choice_of,
)
from nanobot_api.domain.conversation import Message
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.front_ends import PlainShape, auxiliary_task
from nanobot_api.domain.requests import (
    HistoryMode,
    auxiliary_conversation,
    auxiliary_text,
    check_text,
    turn_position,
    turn_text,
)
from nanobot_api.domain.sessions import SessionHeaders, api_session, requested_session
from nanobot_api.domain.turns import ChatRequest

_T = TypeVar("_T")


@attrs.frozen
class TextPart:
    text: str


@attrs.frozen
class ImageUrl:
    url: str


@attrs.frozen
class ImagePart:
    image_url: ImageUrl


@attrs.frozen
class FileData:
    file_data: str
    filename: str | None = None


@attrs.frozen
class FilePart:
    file: FileData


ContentPart = TextPart | ImagePart | FilePart
PART_TAGS: Final[dict[type, str]] = {TextPart: "text", ImagePart: "image_url", FilePart: "file"}
_TAGGED: Final = frozenset(PART_TAGS.values())


@attrs.frozen
class UserMessage:
    role: str
    content: str | list[ContentPart]


@attrs.frozen
class PlainMessage:
    """A message of an auxiliary request, read for its text only."""

    role: str
    content: str | list[ContentPart] | None = None


@attrs.frozen
class StreamOptions:
    include_usage: bool | None = None
    # Not OpenAI's: adds `event: nanobot.tool` events for the agent's own tool steps.
    include_tool_events: bool | None = None


@attrs.frozen
class ChatBody:
    """The fields of a chat completion request that nanobot-api reads."""

    model: str | None = None
    session_id: Any = None  # validated by the domain, which owns its rules
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    parallel_tool_calls: bool | None = None
    # Read by the domain's rules (``domain/client.py``), which name what is wrong.
    n: Any = None
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None


@attrs.frozen
class ToolMessage:
    """A ``tool`` message: the result of one of the client's own tool calls."""

    role: str
    tool_call_id: str
    content: str | list[ContentPart] | None = None


class _UnknownPart(ValueError):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class _WrongType(TypeError):
    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _exact(kind: type, expected: str) -> Any:
    def structure(value: object, _: type) -> object:
        # bool is an int subclass; JSON true must not pass for a number.
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise _WrongType(expected)
        return value

    return structure


def make_wire_converter() -> cattrs.Converter:
    """The converter for OpenAI request bodies.

    Rules: unknown keys are ignored; str, bool, int and float fields accept only that
    JSON type (no coercion of 1 to True or of 5 to "5"); content is a string or a list
    of parts tagged by ``"type"`` (text, image_url, file); errors keep their path for
    ``param``.
    """
    converter = cattrs.Converter(detailed_validation=True)
    converter.register_structure_hook(str, _exact(str, "a string"))
    converter.register_structure_hook(bool, _exact(bool, "a boolean"))
    converter.register_structure_hook(int, _exact(int, "an integer"))
    converter.register_structure_hook(float, _exact(float, "a number"))

    def objects_only(cl: type) -> Any:
        # cattrs would build a class whose fields all have defaults from any container.
        build = make_dict_structure_fn(cl, converter)  # type: ignore[var-annotated]

        def structure(value: object, _: type) -> object:
            if not isinstance(value, dict):
                raise _WrongType("an object")
            return build(value, cl)

        return structure

    converter.register_structure_hook_factory(attrs.has, objects_only)
    configure_tagged_union(
        ContentPart, converter, tag_generator=PART_TAGS.__getitem__, tag_name="type"
    )

    def structure_content(value: object, _: type) -> str | list[ContentPart]:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise _WrongType("a string or a list of content parts")
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") not in _TAGGED:
                raise _UnknownPart(index)
        return converter.structure(value, list[ContentPart])

    converter.register_structure_hook(str | list[ContentPart], structure_content)

    def structure_optional_content(value: object, _: type) -> str | list[ContentPart] | None:
        return None if value is None else structure_content(value, _)

    converter.register_structure_hook(str | list[ContentPart] | None, structure_optional_content)
    return converter


_CONVERTER: Final = make_wire_converter()


def error_param(exc: BaseException, path: str) -> tuple[str, BaseException]:
    """The dotted path (``messages[0].content[1].image_url.url``) of cattrs' first error."""
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        if with_notes:
            inner, note = with_notes[0]
            return error_param(inner, f"{path}[{note.index!r}]")
        return error_param(without[0], path)
    if isinstance(exc, ClassValidationError):
        by_field, unplaced = exc.group_exceptions()
        if by_field:
            inner, field = by_field[0]
            return error_param(inner, f"{path}.{field.name}" if path else field.name)
        return error_param(unplaced[0], path)
    return path, exc


def _structure(value: object, kind: type[_T], path: str) -> _T:
    try:
        return _CONVERTER.structure(value, kind)
    except (ClassValidationError, IterableValidationError, _WrongType) as exc:
        param, leaf = error_param(exc, path)
        if isinstance(leaf, _UnknownPart):
            param = f"{param}[{leaf.index}].type"
        raise InvalidRequest(_describe(param, leaf), param) from exc


def _describe(param: str, leaf: BaseException) -> str:
    if isinstance(leaf, _WrongType):
        return f"{param} must be {leaf.expected}"
    if isinstance(leaf, _UnknownPart):
        return f"{param} must be one of 'text', 'image_url', 'file'"
    if isinstance(leaf, KeyError):
        return f"{param} is required"
    return f"{param} is invalid"


def load_json_body(raw: str | bytes | bytearray) -> object:
    """A request body parsed as JSON, or InvalidRequest: not JSON, not UTF-8, or nested
    deeper than the parser's recursion allows (100,000 brackets once made a 500)."""
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise InvalidRequest("Request body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Request body must be valid JSON") from exc


def parse_chat_json(
    body: object,
    limits: UploadLimits,
    *,
    history: HistoryMode = "reject",
    headers: SessionHeaders | None = None,
    task: str | None = None,
    from_open_webui: bool = False,
    ids: MessageIds = NO_IDS,
    lifted: Mapping[str, LiftedFile] | None = None,
) -> ChatRequest:
    """A JSON chat completion body as a ChatRequest, or the InvalidRequest that refuses it.

    ``lifted`` holds the files cut out of the body before parsing, by placeholder.
    Which message is the turn, and what else may come with it, is the domain's
    (``domain/requests.py``): ``history="latest"`` accepts a whole conversation whose
    last message is the turn, and the turns before it say which branch it continues
    (``domain/branches.py``; ``from_open_webui``: a front end that always sends its
    whole conversation; ``ids``: the message ids it sent in headers); ``task`` is the
    task header's value, and a request that is an auxiliary task
    (``domain.front_ends.auxiliary_task``) accepts any plain conversation.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    messages = body.get("messages")
    fields = _structure(body, ChatBody, "")
    named = requested_session(fields.session_id, headers or SessionHeaders())
    options = fields.stream_options
    session = named or api_session(None)
    stream = bool(fields.stream)
    include_usage = bool(options and options.include_usage)
    tool_events = bool(options and options.include_tool_events)
    check_n(fields.n)
    shape = _shape(messages, body.get("tools"), stream, from_open_webui)
    task = auxiliary_task(task, shape)
    if task is not None:
        conversation = auxiliary_conversation(_plain_messages(messages))
        return ChatRequest(
            session,
            auxiliary_text(conversation),
            model=fields.model,
            stream=stream,
            include_usage=include_usage,
            task=task,
            conversation=conversation,
        )
    if not isinstance(messages, list):
        messages = []
    at = turn_position([_role(m) for m in messages], history, named is not None)
    asks = _turn_options(fields, [_plain_text(messages[i], i) for i in at.instructions])
    results = tuple(_tool_result(messages[i], i) for i in at.results)
    if at.continues:
        return ChatRequest(
            session,
            "",
            model=fields.model,
            stream=stream,
            include_usage=include_usage,
            tool_events=tool_events,
            options=asks,
            tool_results=results,
            continues=True,
            resent_calls=_call_ids(messages[at.results[0] - 1]),
            resent_at=at.results[0] - 1,
        )
    where = f"messages[{at.index}]"
    message = _structure(messages[at.index], UserMessage, where)
    texts, uploads = _content(message.content, limits, where, lifted or {})
    if history == "latest":
        # The client's instructions are no part of the conversation it shows: a system
        # message and one user message is a new message, as in the default mode.
        instructions = set(at.instructions)
        earlier = [m for i, m in enumerate(shape.messages[: at.index]) if i not in instructions]
        shown = shown_conversation(earlier, front_end=from_open_webui, ids=ids)
    else:
        shown = Shown(ids=ids)
    return ChatRequest(
        session,
        turn_text(texts, len(uploads)),
        uploads,
        model=fields.model,
        stream=stream,
        include_usage=include_usage,
        tool_events=tool_events,
        shown=shown,
        options=asks,
    )


def _turn_options(fields: ChatBody, instructions: list[str]) -> TurnOptions:
    """What the client asked of its turn besides the message, by the domain's rules."""
    tools = client_tools(fields.tools)
    return TurnOptions(
        instructions="\n\n".join(text for text in instructions if text) or None,
        response_format=response_format_of(fields.response_format),
        tools=tools,
        tool_choice=tool_choice_of(fields.tool_choice, tools) if tools else None,
        parallel_tool_calls=fields.parallel_tool_calls if tools else None,
    )


def _plain_text(raw: object, index: int) -> str:
    """The text of a system or developer message (its text parts joined)."""
    where = f"messages[{index}]"
    content = _structure(raw, PlainMessage, where).content
    if isinstance(content, list):
        content = "\n".join(part.text for part in content if isinstance(part, TextPart))
    return check_text(content or "", f"{where}.content")


def _tool_result(raw: object, index: int) -> Message:
    """A tool message as the result it carries for one of the client's tool calls."""
    where = f"messages[{index}]"
    message = _structure(raw, ToolMessage, where)
    content = message.content
    if isinstance(content, list):
        content = "\n".join(part.text for part in content if isinstance(part, TextPart))
    return Message.tool_result(message.tool_call_id, check_text(content or "", f"{where}.content"))


def _call_ids(message: object) -> tuple[str, ...]:
    """The tool-call ids of a resent assistant message (read leniently: only compared
    with the paused turn's; nothing for any other message)."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return ()
    calls = message.get("tool_calls")
    return tuple(
        call["id"]
        for call in (calls if isinstance(calls, list) else ())
        if isinstance(call, dict) and isinstance(call.get("id"), str)
    )


def _role(message: object) -> str | None:
    role = message.get("role") if isinstance(message, dict) else None
    return role if isinstance(role, str) else None


def _shape(messages: object, tools: object, stream: bool, from_open_webui: bool) -> PlainShape:
    """What tells a task from a turn, read leniently: the turn's own parsing checks types."""
    pairs: list[tuple[str, str]] = []
    for raw in messages if isinstance(messages, list) else ():
        role = raw.get("role") if isinstance(raw, dict) else None
        content = raw.get("content") if isinstance(raw, dict) else None
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            content = "\n".join(t for t in parts if isinstance(t, str))
        text = content if isinstance(content, str) else ""
        pairs.append((role if isinstance(role, str) else "", text))
    return PlainShape(tuple(pairs), stream, bool(tools), from_open_webui)


def _plain_messages(messages: object) -> list[tuple[object, str]]:
    """An auxiliary request's messages as (role, text); attachments are not read."""
    if not isinstance(messages, list):
        return []
    plain: list[tuple[object, str]] = []
    for index, raw in enumerate(messages):
        message = _structure(raw, PlainMessage, f"messages[{index}]")
        content = message.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content if isinstance(part, TextPart))
        plain.append((message.role, content or ""))
    return plain


def _content(
    content: str | list[ContentPart],
    limits: UploadLimits,
    where: str,
    lifted: Mapping[str, LiftedFile],
) -> tuple[list[str], tuple[Upload, ...]]:
    if isinstance(content, str):
        return [check_text(content, f"{where}.content")], ()
    texts: list[str] = []
    uploads: list[Upload] = []
    for index, part in enumerate(content):
        param = f"{where}.content[{index}]"
        match part:
            case TextPart(text=text):
                texts.append(check_text(text, f"{param}.text"))
            case ImagePart(image_url=ImageUrl(url=url)):
                uploads.append(_upload(url, None, f"{param}.image_url.url", limits, lifted))
            case FilePart(file=FileData(file_data=data, filename=name)):
                uploads.append(_upload(data, name, f"{param}.file.file_data", limits, lifted))
        check_file_count(len(uploads), limits)
    return texts, tuple(uploads)


def _upload(
    url: str,
    filename: str | None,
    param: str,
    limits: UploadLimits,
    lifted: Mapping[str, LiftedFile],
) -> Upload:
    held = lifted.get(url)
    if held is not None:
        return held.upload(filename=filename, param=param, limits=limits)
    return upload_from_url(url, filename=filename, param=param, limits=limits)


def parse_form(
    fields: Mapping[str, str],
    uploads: tuple[Upload, ...],
    headers: SessionHeaders | None = None,
) -> ChatRequest:
    """A multipart/form-data chat request (fields and files already read) as a ChatRequest."""
    stream = fields.get("stream", "false").strip().lower()
    if stream not in FORM_BOOLEANS:
        raise InvalidRequest("stream must be true or false", "stream")
    return ChatRequest(
        session=requested_session(fields.get("session_id"), headers or SessionHeaders())
        or api_session(None),
        text=turn_text([fields.get("message", "")], len(uploads)),
        uploads=uploads,
        model=fields.get("model") or None,
        stream=FORM_BOOLEANS[stream],
    )


FORM_BOOLEANS: Final = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
    "": False,
}
