"""The OpenAI chat-completions wire format: messages and tools out (``request_encoder``
builds the bodies from them), answers and chunks in.

Pure translation between domain values and JSON-ready dicts; no I/O. Providers differ
in small ways (a tool call's name repeated in every chunk, usage on the last choice
chunk instead of a separate one, no ``[DONE]``), and the readers here accept each.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import cast

from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.models import (
    ImagePart,
    JsonObject,
    JsonValue,
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPiece,
    ToolSpec,
    UserContent,
)


class WireError(ValueError):
    """Raised when the upstream's JSON does not have the chat-completion shape."""


def tools_json(tools: tuple[ToolSpec, ...]) -> JsonValue:
    """The ``tools`` of a request: each spec as a function the model may call."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


def message_json(message: ModelMessage) -> JsonObject:
    """One message in the provider's shape; attachments as content parts."""
    if isinstance(message, UserContent):
        return {"role": "user", "content": _content_json(message)}
    item: JsonObject = {"role": message.role, "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    return item


def _content_json(message: UserContent) -> JsonValue:
    if all(isinstance(p, TextPart) for p in message.parts):
        # Plain text is what every model accepts, text-only ones included.
        return message.text
    parts: list[JsonValue] = []
    for part in message.parts:
        if isinstance(part, ImagePart):
            url = f"data:{part.mime};base64,{base64.b64encode(part.data).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def usage_of(value: object) -> Usage | None:
    """The usage object of an answer or a chunk, when it has one."""
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    return Usage(
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


def error_message(value: object) -> str | None:
    """The ``error.message`` of an error body or an error event, if it is one."""
    if not isinstance(value, dict):
        return None
    error = value.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        return message if isinstance(message, str) else "unknown error"
    if isinstance(error, str):
        return error
    return None


def response_of(answer: object) -> ModelResponse:
    """A whole (non-streamed) chat-completion answer."""
    choice = _first_choice(answer)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise WireError("choices[0].message is missing")
    content = message.get("content")
    calls = message.get("tool_calls")
    tool_calls = tuple(
        _tool_call(index, call)
        for index, call in enumerate(calls if isinstance(calls, list) else ())
    )
    reason = choice.get("finish_reason")
    return ModelResponse(
        Message.assistant(content if isinstance(content, str) else None, tool_calls),
        usage_of(cast("dict[str, object]", answer).get("usage")) or Usage(),
        reason if isinstance(reason, str) else None,
    )


def _first_choice(answer: object) -> dict[str, object]:
    if not isinstance(answer, dict):
        raise WireError("the answer is not a JSON object")
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise WireError("the answer has no choices")
    return cast("dict[str, object]", choices[0])


def _tool_call(index: int, call: object) -> ToolCall:
    if not isinstance(call, dict):
        raise WireError("a tool call is not an object")
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        # A few servers send the arguments as an object instead of JSON text.
        arguments = json.dumps(arguments)
    return ToolCall(
        _call_id(call.get("id"), index),
        name if isinstance(name, str) else "",
        arguments if isinstance(arguments, str) else "",
    )


def _call_id(value: object, index: int) -> str:
    # The id pairs a call with its result; a server that omits it gets one made up.
    return value if isinstance(value, str) and value else f"call_{index}_{uuid.uuid4().hex[:12]}"


class _PartialCall:
    __slots__ = ("announced", "arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []
        self.announced = False  # its first piece (id and name) was handed on


class StreamAccumulator:
    """Builds one response from the chunks of a streamed answer."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        # The tool-call pieces of the chunks added since take_pieces() last emptied it.
        self.pieces: list[ToolCallPiece] = []
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False
        # Characters of text and tool arguments so far, to stop a runaway answer.
        self.size = 0

    def add(self, data: str, chunk: object) -> str:
        """Takes one decoded chunk; returns the answer text it adds ("" if none)."""
        if not isinstance(chunk, dict):
            raise WireError(f"a stream chunk is not a JSON object: {data[:80]!r}")
        usage = usage_of(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return ""
        choice = choices[0]
        if not isinstance(choice, dict):
            return ""
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                self._add_call(position, call)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text.append(content)
            self.size += len(content)
            return content
        return ""

    def take_pieces(self) -> list[ToolCallPiece]:
        """The tool-call pieces added since the last call, in order."""
        pieces, self.pieces = self.pieces, []
        return pieces

    def _add_call(self, position: int, call: object) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index")
        if not isinstance(index, int):
            index = position
        partial = self._calls.setdefault(index, _PartialCall())
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id and not partial.id:
            partial.id = call_id
        function = call.get("function")
        if not isinstance(function, dict):
            return
        name = function.get("name")
        # OpenAI sends the name once; some servers repeat it whole in every chunk.
        if isinstance(name, str) and name and name != partial.name:
            partial.name += name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            partial.arguments.append(arguments)
            self.size += len(arguments)
        if not partial.announced:
            if partial.name:
                # The first piece that names the call starts it; its id is fixed now (one
                # made up if the server sent none), so pieces and the whole call agree.
                partial.announced = True
                partial.id = _call_id(partial.id, index)
                whole = "".join(partial.arguments)
                self.pieces.append(ToolCallPiece(index, partial.id, partial.name, whole))
        elif isinstance(arguments, str) and arguments:
            self.pieces.append(ToolCallPiece(index, "", "", arguments))

    def cut_response(self, max_chars: int) -> ModelResponse:
        """The answer so far cut to ``max_chars`` of text, without its (unfinished) tool
        calls, ending for "length": what is left of an answer that grew too long."""
        text = "".join(self._text)[:max_chars]
        return ModelResponse(Message.assistant(text or None), self.usage or Usage(), "length")

    def response(self) -> ModelResponse:
        """The assistant message built so far, with its tool calls in index order."""
        calls = tuple(
            ToolCall(_call_id(p.id, index), p.name, "".join(p.arguments))
            for index, p in sorted(self._calls.items())
        )
        text = "".join(self._text)
        return ModelResponse(
            Message.assistant(text or None, calls), self.usage or Usage(), self.finish_reason
        )
