"""Large base64 files cut out of a JSON body before it is parsed.

``json.loads`` needs the whole body and returns each string as a new ``str``: a 10 MB
file sent as a data URL was held as the 13 MB body, the 13 MB string and the 10 MB
decoded bytes at once. Here each large data URL under an ``"url"`` or ``"file_data"``
key is decoded straight from the body's bytes and replaced by a short placeholder, so
the body can be dropped before the (now small) rest of it is parsed.

Only a string the parser would read the same way is lifted: no backslash escape in it,
and the exact ``data:<mime>[;params];base64,`` head. Anything else takes the ordinary path.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Mapping

import attrs

from nanobot_api.domain.attachments import (
    Upload,
    UploadLimits,
    check_file_size,
    clean_filename,
    least_decoded_size,
)
from nanobot_api.domain.errors import InvalidRequest

LIFT_ABOVE = 64 * 1024  # bytes of base64: smaller ones cost little the ordinary way
# Bounded like the domain's data URL head: an unbounded repetition of parameters
# backtracked through a whole 60 MB body of ";a" (gigabytes, seconds).
_OPENING = re.compile(
    rb'"(?:url|file_data)"\s{0,64}:\s{0,64}"(data:[^";,\\]{0,255}(?:;[^";,\\]{0,255}){0,16};base64,)'
)


@attrs.frozen
class LiftedFile:
    """A data URL's file, decoded from the body, or why it could not be."""

    mime: str | None
    encoded_size: int
    data: bytes | None  # None: not decoded (too large) or not valid base64

    def upload(self, *, filename: str | None, param: str, limits: UploadLimits) -> Upload:
        """The Upload the ordinary path would have made, or the same refusal."""
        name = clean_filename(filename)
        label = name or "upload"
        check_file_size(least_decoded_size(self.encoded_size), label, limits)
        if self.data is None:
            raise InvalidRequest(f"{param} is not valid base64", param)
        check_file_size(len(self.data), label, limits)
        return Upload(self.data, name, self.mime)


def lift_data_urls(
    body: bytearray, limits: UploadLimits
) -> tuple[bytearray | bytes, Mapping[str, LiftedFile]]:
    """The body with its large data URLs replaced by placeholders, and what they held."""
    lifted: dict[str, LiftedFile] = {}
    if len(body) < LIFT_ABOVE:
        return body, lifted  # too short to hold one: most bodies, spared the scan
    pieces: list[bytes | memoryview] = []
    view = memoryview(body)
    tag = secrets.token_hex(8)  # a client cannot write a placeholder of its own
    done = 0
    for match in _OPENING.finditer(body):
        start, payload = match.start(1), match.end(1)
        end = body.find(b'"', payload)
        if start < done or end < 0 or end - payload < LIFT_ABOVE:
            continue
        if body.find(b"\\", payload, end) >= 0:
            continue  # an escape: leave it to the JSON parser
        last = end
        while body[last - 1 : last].isspace():  # the ordinary path strips the URL too
            last -= 1
        head = match[1].decode("ascii", "replace")
        placeholder = f"nanobot-lifted:{tag}:{len(lifted)}"
        lifted[placeholder] = _lift(head, body, payload, last, limits)
        pieces += [view[done:start], placeholder.encode()]
        done = end
    if not lifted:
        return body, lifted
    pieces.append(view[done:])
    return b"".join(pieces), lifted


def _lift(head: str, body: bytearray, start: int, end: int, limits: UploadLimits) -> LiftedFile:
    mime = head[len("data:") :].split(";", 1)[0].split(",", 1)[0] or None
    size = end - start
    if least_decoded_size(size) > limits.max_file_bytes:
        return LiftedFile(mime, size, None)  # refused when named, never decoded
    if body.find(b" ", start, end) >= 0:
        # RFC 2045 base64 may hold spaces (a JSON string cannot hold a raw line break).
        return _lift_spaced(mime, bytes(body[start:end]).replace(b" ", b""))
    # Padding may only end the payload; a slice alone cannot tell.
    if body.find(b"=", start, max(start, end - 2)) >= 0:
        return LiftedFile(mime, size, None)
    # One call over a view of the body: no copy of the text, and no parts to join.
    with memoryview(body) as view, view[start:end] as payload:
        try:
            data = binascii.a2b_base64(payload, strict_mode=True)
        except binascii.Error:
            return LiftedFile(mime, size, None)
    return LiftedFile(mime, size, data)


def _lift_spaced(mime: str | None, payload: bytes) -> LiftedFile:
    if payload.find(b"=", 0, max(0, len(payload) - 2)) >= 0:
        return LiftedFile(mime, len(payload), None)
    try:
        return LiftedFile(mime, len(payload), binascii.a2b_base64(payload, strict_mode=True))
    except binascii.Error:
        return LiftedFile(mime, len(payload), None)
