"""Tool calls as the agent handles them: arguments, names, results and their bounds.

A model writes tool arguments as JSON text, and models get it wrong: broken JSON, a
missing field, a number where a string belongs. None of that is the caller's fault, so
none of it raises: ``decode_arguments`` returns either a JSON object or an
``ArgumentProblem`` whose text the model reads as the tool result and can correct.
Whether the object fits the tool's JSON Schema is decided by a real validator in the
adapters (``adapters.tools.json_schema``): the domain only parses.

Tools from MCP servers are offered as ``mcp_<server>_<tool>``, cut to the providers'
name rules (``tool_name``); what they return reaches the model bounded
(``bounded_output``): text cut with a visible marker, a few images at most.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection

import attrs

from nanobot_api.domain.attachments import MIB, size_label, truncation_marker
from nanobot_api.domain.models import ImagePart, JsonObject

# OpenAI's rule for function names (most providers copy it): ^[a-zA-Z0-9_-]{1,64}$.
MAX_TOOL_NAME = 64
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST_CHARS = 8


@attrs.frozen
class ArgumentProblem:
    """Why a tool call's arguments were refused, phrased for the model to fix them."""

    message: str


def decode_arguments(raw: str) -> JsonObject | ArgumentProblem:
    """The arguments as a JSON object, or what is wrong with the text.

    Empty text counts as ``{}``: some models send nothing for a tool without parameters.
    """
    text = raw.strip() or "{}"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return ArgumentProblem(f"arguments are not valid JSON ({exc})")
    if not isinstance(value, dict):
        return ArgumentProblem(f"arguments must be a JSON object, got {json_type_name(value)}")
    return value


def json_type_name(value: object) -> str:
    """``value``'s JSON type with its article, as a model reads it (``an array``)."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# ---- names -----------------------------------------------------------------------


def tool_name(server: str, tool: str) -> str:
    """``mcp_<server>_<tool>`` within the providers' rules: characters outside
    ``[A-Za-z0-9_-]`` become ``_``; a name over 64 characters is cut and ends in a digest
    of the exact pair, so two long names that share a beginning still differ."""
    name = _NOT_NAME.sub("_", f"mcp_{server}_{tool}")
    if len(name) <= MAX_TOOL_NAME:
        return name
    return name[: MAX_TOOL_NAME - _DIGEST_CHARS - 1] + "_" + _digest(server, tool)


def distinct_tool_name(server: str, tool: str, taken: Collection[str]) -> str:
    """``tool_name``, or when that is ``taken`` (two raw names that differ only in the
    characters replaced) the same name ending in the pair's digest."""
    name = tool_name(server, tool)
    if name not in taken:
        return name
    return name[: MAX_TOOL_NAME - _DIGEST_CHARS - 1] + "_" + _digest(server, tool)


def _digest(server: str, tool: str) -> str:
    return hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:_DIGEST_CHARS]


def is_enabled(enabled: Collection[str], raw: str, wrapped: str) -> bool:
    """Whether a server's ``enabledTools`` lets a tool through: ``"*"`` lets all, else the
    tool's raw name (as the server calls it) or its wrapped name must be listed."""
    return "*" in enabled or raw in enabled or wrapped in enabled


# ---- results ---------------------------------------------------------------------


@attrs.frozen
class ToolOutput:
    """What a tool call gave the model: text, and images it may look at this turn.

    ``is_error`` marks a refusal or a failure (the text says which); the turn goes on
    either way, and the model reads it like any result.
    """

    text: str
    images: tuple[ImagePart, ...] = ()
    is_error: bool = False

    @classmethod
    def error(cls, text: str) -> ToolOutput:
        return cls(text, is_error=True)


@attrs.frozen
class ResultLimits:
    """Bounds on one tool result: text characters, image count, bytes per image."""

    max_chars: int = 16_000
    max_images: int = 4
    max_image_bytes: int = 5 * MIB


def bounded_output(
    texts: list[str],
    images: list[ImagePart],
    limits: ResultLimits,
    *,
    is_error: bool = False,
) -> ToolOutput:
    """A result made of ``texts`` (joined by blank lines) and ``images``, within ``limits``.

    Text past ``max_chars`` is cut and ends with ``[... truncated: N more characters]``;
    an image over ``max_image_bytes`` or past ``max_images`` is left out and named in a
    line of text, so the model knows something was there.
    """
    notes: list[str] = []
    kept: list[ImagePart] = []
    for image in images:
        if len(image.data) > limits.max_image_bytes:
            shown = size_label(limits.max_image_bytes)
            notes.append(f"[image left out: {image.mime} over {shown}]")
        elif len(kept) >= limits.max_images:
            notes.append(f"[image left out: more than {limits.max_images} images]")
        else:
            kept.append(image)
    text = "\n\n".join(part for part in texts if part)
    if len(text) > limits.max_chars:
        rest = len(text) - limits.max_chars
        text = text[: limits.max_chars] + "\n" + truncation_marker(f"{rest:,} more characters")
    if kept:
        notes.append(f"[{len(kept)} image(s) attached below, visible to you in this turn only]")
    text = "\n".join([text, *notes]) if text else "\n".join(notes)
    return ToolOutput(text or "(no output)", tuple(kept), is_error)
