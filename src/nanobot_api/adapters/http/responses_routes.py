"""``/v1/responses`` and ``/v1/conversations``: Quart routes over their two ports.

They are ordinary Quart routes, so the request rules every route passes (request id,
API key, CORS) apply to them as to the rest; bodies are bounded by the request limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import attrs
from quart import Quart, Response, request

from nanobot_api.adapters.http.errors import failure_body
from nanobot_api.adapters.http.headers import (
    TRUNCATED_HEADER,
    quart_session_headers,
    truncated_files,
)
from nanobot_api.adapters.http.lifted import lift_data_urls
from nanobot_api.adapters.http.pipeline.error_rendering import json_response
from nanobot_api.adapters.http.pipeline.limits import turn_slot_of
from nanobot_api.adapters.http.responses_json import (
    EventStream,
    conversation_json,
    input_item,
    item_json,
    page_json,
    response_json,
    sse_event,
)
from nanobot_api.adapters.http.responses_wire import (
    TOOL_EVENTS,
    conversation_items,
    parse_response_json,
)
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.http.streaming import KEEPALIVE
from nanobot_api.adapters.http.tenancy import tenant_of
from nanobot_api.adapters.http.wire import load_json_body
from nanobot_api.domain.conversations import check_metadata, check_page
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.ports import Conversations, ResponseRun, ResponseTurns
from nanobot_api.domain.responses import ResponseRecord, ResponseRequest, check_response_id
from nanobot_api.domain.sessions import SessionKey, api_session

RESPONSES_PATH: Final = "/v1/responses"
CONVERSATIONS_PATH: Final = "/v1/conversations"
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def caller_channel() -> str:
    """The session channel of the caller (its key's tenant): whose sessions and
    responses it may see."""
    return tenant_of(request.scope).channel


def caller_session(session_id: object, param: str = "conversation_id") -> SessionKey:
    """The caller's session of that id (the same rules as ``session_id``), under its
    key's tenant: another key's session of the same id is another session."""
    return tenant_of(request.scope).scope(api_session(session_id, param))


async def json_body() -> Any:
    raw = await request.get_data()
    return load_json_body(raw) if raw.strip() else {}


def install_responses(app: Quart, responses: ResponseTurns, settings: HttpSettings) -> None:
    """Adds the Responses routes to ``app``."""

    @app.post(RESPONSES_PATH)
    async def create_response() -> Response:
        raw = bytearray(await request.get_data(cache=False, as_text=False, parse_form_data=False))
        rest, lifted = lift_data_urls(raw, settings.limits)
        del raw
        body = load_json_body(rest)
        headers = quart_session_headers(request.headers)
        parsed = parse_response_json(
            body, settings.limits, history=settings.history, headers=headers, lifted=lifted
        )
        if parsed.named is not None:
            parsed = attrs.evolve(parsed, named=tenant_of(request.scope).scope(parsed.named))
        channel = caller_channel()
        run = await responses.create(parsed, channel, turn_slot_of(request.scope))
        if parsed.stream:
            answer = _stream(settings, responses, run, channel, tool_events=parsed.tool_events)
        elif run.failure is not None and not run.record.background:
            status, error = failure_body(run.failure)
            answer = json_response(error, status)
        else:
            answer = json_response(response_json(run.record))
        cut = truncated_files(run.documents)
        if cut is not None:
            answer.headers[TRUNCATED_HEADER] = cut
        if run.record.background:
            # Where it stands from now on: a retry with its Idempotency-Key gets that
            # (a stream, from its first event, if this was one).
            answer.headers["Content-Location"] = _location(run.record.id, parsed)
        return answer

    @app.get(f"{RESPONSES_PATH}/<response_id>")
    async def retrieve_response(response_id: str) -> Response:
        channel = caller_channel()
        check_response_id(response_id)
        if _query_flag("stream"):
            record = await responses.retrieve(response_id, channel)
            after = _starting_after()
            tool_events = TOOL_EVENTS in request.args.getlist("include[]") + request.args.getlist(
                "include"
            )
            return _stream(
                settings, responses, response_id, channel, tool_events, first=record, after=after
            )
        return json_response(response_json(await responses.retrieve(response_id, channel)))

    @app.delete(f"{RESPONSES_PATH}/<response_id>")
    async def delete_response(response_id: str) -> Response:
        check_response_id(response_id)
        await responses.delete(response_id, caller_channel())
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})

    @app.post(f"{RESPONSES_PATH}/<response_id>/cancel")
    async def cancel_response(response_id: str) -> Response:
        check_response_id(response_id)
        return json_response(response_json(await responses.cancel(response_id, caller_channel())))

    @app.get(f"{RESPONSES_PATH}/<response_id>/input_items")
    async def list_input_items(response_id: str) -> Response:
        check_response_id(response_id)
        record = await responses.retrieve(response_id, caller_channel())
        limit, order = check_page(request.args.get("limit"), request.args.get("order"))
        items = [input_item(record.id, i, m) for i, m in enumerate(record.input)]
        if order == "desc":
            items.reverse()
        after = request.args.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return json_response(page_json(items[:limit], len(items) > limit))


def install_conversations(app: Quart, conversations: Conversations) -> None:
    """Adds the Conversations routes to ``app``."""

    @app.post(CONVERSATIONS_PATH)
    async def create_conversation() -> Response:
        body = await json_body()
        if not isinstance(body, dict):
            raise InvalidRequest("Request body must be a JSON object")
        metadata = check_metadata(body.get("metadata"))
        items = conversation_items(body.get("items"))
        record = await conversations.create(caller_channel(), metadata, items)
        return json_response(conversation_json(record))

    @app.get(CONVERSATIONS_PATH)
    async def list_conversations() -> Response:
        limit, _ = check_page(request.args.get("limit"), None)
        views, more = await conversations.listing(
            caller_channel(), after=request.args.get("after"), limit=limit
        )
        data = [{**conversation_json(v.record), "updated_at": int(v.updated_at)} for v in views]
        return json_response(page_json(data, more))

    @app.get(f"{CONVERSATIONS_PATH}/<path:conversation_id>/items")
    async def list_items(conversation_id: str) -> Response:
        limit, order = check_page(request.args.get("limit"), request.args.get("order"))
        items, more = await conversations.items(
            caller_session(conversation_id),
            after=request.args.get("after"),
            limit=limit,
            order=order,
        )
        return json_response(page_json([item_json(i) for i in items], more))

    @app.get(f"{CONVERSATIONS_PATH}/<path:conversation_id>")
    async def retrieve_conversation(conversation_id: str) -> Response:
        view = await conversations.get(caller_session(conversation_id))
        return json_response(conversation_json(view.record))

    @app.post(f"{CONVERSATIONS_PATH}/<path:conversation_id>")
    async def update_conversation(conversation_id: str) -> Response:
        body = await json_body()
        if not isinstance(body, dict):
            raise InvalidRequest("Request body must be a JSON object")
        metadata = check_metadata(body.get("metadata"))
        record = await conversations.update(caller_session(conversation_id), metadata)
        return json_response(conversation_json(record))

    @app.delete(f"{CONVERSATIONS_PATH}/<path:conversation_id>")
    async def delete_conversation(conversation_id: str) -> Response:
        await conversations.delete(caller_session(conversation_id))
        return json_response(
            {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        )


def _location(response_id: str, parsed: ResponseRequest) -> str:
    location = f"{RESPONSES_PATH}/{response_id}"
    if parsed.stream:
        location += "?stream=true"
        if parsed.tool_events:
            location += f"&include={TOOL_EVENTS}"
    return location


def _query_flag(name: str) -> bool:
    return request.args.get(name, "false").strip().lower() in ("true", "1", "yes")


def _starting_after() -> int:
    value = request.args.get("starting_after")
    if value is None:
        return -1
    digits = value.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidRequest("starting_after must be an integer", "starting_after")
    return int(value)


def _stream(
    settings: HttpSettings,
    turns: ResponseTurns,
    run: ResponseRun | str,
    channel: str,
    tool_events: bool,
    *,
    first: ResponseRecord | None = None,
    after: int = -1,
) -> Response:
    start = first if first is not None else run.first  # type: ignore[union-attr]
    events = EventStream(start, tool_events=tool_events)

    async def body() -> AsyncIterator[bytes]:
        ended = False
        try:
            for event in events.start():
                if event["sequence_number"] > after:
                    yield sse_event(event)
            async for step in turns.follow(run, channel, settings.sse_keepalive_s):
                if step is None:
                    yield KEEPALIVE
                    continue
                for event in events.step(step):
                    if event["sequence_number"] > after:
                        yield sse_event(event)
            ended = True
        finally:
            if not ended and not isinstance(run, str):
                turns.abandon(run)

    response = Response(body(), content_type="text/event-stream", headers=_SSE_HEADERS)
    response.timeout = None  # a turn may stream for longer than Quart's default
    return response
