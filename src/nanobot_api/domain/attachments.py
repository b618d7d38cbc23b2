"""Files sent with a turn: as received (Upload) and as the agent receives them."""

from __future__ import annotations

import base64
import binascii
import re

import attrs

from nanobot_api.domain.errors import InvalidRequest, PayloadTooLarge

MIB = 1024 * 1024
REMOTE_URL_REFUSED = (
    "Remote image URLs are not supported. "
    "Use base64 data URLs or upload files via multipart/form-data."
)
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<payload>.*)", re.DOTALL)


@attrs.frozen
class UploadLimits:
    """How much a client may send in one request."""

    max_file_bytes: int = 10 * MIB
    max_files: int = 16
    max_request_bytes: int = 64 * MIB

    @property
    def max_file_mb_label(self) -> str:
        return f"{self.max_file_bytes // MIB}MB"


@attrs.frozen
class Upload:
    """A file as the client sent it; its declared name and type are only hints."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    filename: str | None = None
    declared_mime: str | None = None

    @property
    def label(self) -> str:
        """How error messages name the file."""
        return self.filename or "upload"


@attrs.frozen
class Image:
    """An image handed to the agent as is."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    mime: str
    path: str
    filename: str | None = None


@attrs.frozen
class Document:
    """A document handed to the agent as its extracted text."""

    name: str
    text: str
    path: str
    truncated: bool = False


def check_file_size(size: int, label: str, limits: UploadLimits) -> None:
    """Raises PayloadTooLarge naming the file when ``size`` is over the per-file limit."""
    if size > limits.max_file_bytes:
        raise PayloadTooLarge(f"File '{label}' exceeds {limits.max_file_mb_label} limit")


def check_file_count(count: int, limits: UploadLimits) -> None:
    """Raises PayloadTooLarge when a request carries more files than allowed."""
    if count > limits.max_files:
        raise PayloadTooLarge(f"Too many files: at most {limits.max_files} per request")


def upload_from_url(url: str, *, filename: str | None, param: str, limits: UploadLimits) -> Upload:
    """Decodes a ``data:<mime>;base64,<payload>`` URL into an Upload.

    Remote URLs are refused without being fetched; a payload that is not base64,
    or decodes to more than the per-file limit, is refused before it is kept.
    """
    stripped = url.strip()
    if re.match(r"https?://", stripped, re.IGNORECASE):
        raise InvalidRequest(REMOTE_URL_REFUSED, param)
    match = _DATA_URL.fullmatch(stripped)
    if match is None:
        raise InvalidRequest(f"{param} must be a data URL (data:<mime>;base64,...)", param)
    if ";base64" not in match["params"].lower():
        raise InvalidRequest(f"{param} must be base64-encoded (data:<mime>;base64,...)", param)
    payload = match["payload"]
    label = filename or "upload"
    # Checked on the encoded length first so an oversized file is never decoded.
    check_file_size(len(payload) * 3 // 4 - 2, label, limits)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{param} is not valid base64", param) from exc
    check_file_size(len(data), label, limits)
    return Upload(data, filename, match["mime"] or None)
