"""Files lifted out of a JSON body before parsing give exactly what parsing gives."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanobot_api.adapters.http.lifted import LIFT_ABOVE, lift_data_urls
from nanobot_api.adapters.http.wire import parse_chat_json
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.turns import ChatRequest

LIMITS = UploadLimits(max_file_bytes=200_000)
BIG = b"\x89PNG" + bytes(range(256)) * 400  # ~100 KB: lifted


def body_with(*parts: dict[str, object]) -> bytearray:
    return bytearray(json.dumps({"messages": [{"role": "user", "content": list(parts)}]}).encode())


def image(url: str) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url}}


def file(url: str, name: str = "f.bin") -> dict[str, object]:
    return {"type": "file", "file": {"file_data": url, "filename": name}}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def outcome(run: object) -> ChatRequest | tuple[str, str, str | None]:
    try:
        return run()  # type: ignore[operator,no-any-return]
    except NanobotError as exc:
        return type(exc).__name__, exc.message, exc.param


def both_ways(raw: bytearray) -> tuple[object, object, int]:
    ordinary = outcome(lambda: parse_chat_json(json.loads(raw), LIMITS))
    rest, lifted = lift_data_urls(bytearray(raw), LIMITS)
    via_lift = outcome(lambda: parse_chat_json(json.loads(rest), LIMITS, lifted=lifted))
    return ordinary, via_lift, len(lifted)


def test_a_large_image_and_file_are_lifted_and_parse_the_same() -> None:
    raw = body_with({"type": "text", "text": "look"}, image(data_url(BIG)), file(data_url(BIG)))
    ordinary, lifted, count = both_ways(raw)
    assert count == 2
    assert lifted == ordinary
    assert isinstance(lifted, ChatRequest)
    assert [u.data for u in lifted.uploads] == [BIG, BIG]


@pytest.mark.parametrize(
    "url",
    [
        data_url(BIG)[:-8] + "@@@@====",  # not base64
        data_url(BIG)[:200] + "=" + data_url(BIG)[201:],  # padding inside
        data_url(b"x" * 300_000),  # over the file limit
        data_url(BIG) + "  ",  # trailing space, which the ordinary path strips
        data_url(BIG, "text/plain;charset=utf-8"),
    ],
)
def test_refusals_and_edge_cases_match_the_ordinary_path(url: str) -> None:
    ordinary, lifted, count = both_ways(body_with(file(url, "x.txt")))
    assert count == 1
    assert lifted == ordinary


def test_strings_the_parser_must_read_are_left_alone() -> None:
    escaped = bytearray(json.dumps(data_url(BIG)).replace("/", "\\/").encode())
    raw = body_with(file("PLACEHOLDER"))
    raw = raw.replace(b'"PLACEHOLDER"', bytes(escaped))
    ordinary, lifted, count = both_ways(raw)
    assert count == 0
    assert lifted == ordinary
    text = body_with({"type": "text", "text": data_url(BIG)})
    assert both_ways(text)[2] == 0, "a data URL typed as text stays text"


@given(
    st.binary(max_size=64),
    st.sampled_from(["image_url", "file"]),
    st.integers(min_value=0, max_value=40),
    st.sampled_from(["", "=", "@", " ", '"', "\\n"]),
)
def test_any_payload_gives_the_same_outcome_either_way(
    data: bytes, kind: str, at: int, noise: str
) -> None:
    url = data_url(bytes(LIFT_ABOVE) + data)  # large enough to be lifted
    url = url[: len(url) - at] + noise + url[len(url) - at :]
    part = image(url) if kind == "image_url" else file(url)
    try:
        raw = body_with(part)
    except ValueError:
        return
    ordinary, lifted, _ = both_ways(raw)
    assert lifted == ordinary


def test_base64_with_spaces_is_lifted_as_its_bytes() -> None:
    encoded = base64.b64encode(BIG).decode()
    spaced = " ".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    body = body_with(file(f"data:image/png;base64,{spaced}"))
    rest, lifted = lift_data_urls(body, LIMITS)
    assert len(lifted) == 1
    request = parse_chat_json(json.loads(rest), LIMITS, lifted=lifted)
    assert request.uploads[0].data == BIG


def test_a_data_url_head_of_endless_parameters_is_scanned_in_bounded_memory() -> None:
    """2 MB of ";a" once cost ~80 MB of backtracking records (60 MB of it: 2.5 GB)."""
    import tracemalloc

    body = bytearray(b'{"messages": [{"role": "user", "content": [{"type": "image_url", ')
    body += b'"image_url": {"url": "data:image/png' + b";a" * 1_000_000 + b'"}}]}]}'
    tracemalloc.start()
    try:
        lift_data_urls(body, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(body)
    with pytest.raises(NanobotError):
        parse_chat_json(json.loads(bytes(body)), LIMITS)
