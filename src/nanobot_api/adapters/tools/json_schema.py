"""Checking tool-call arguments against the tool's JSON Schema, with ``jsonschema``.

A tool's schema says which draft it follows with ``$schema``; without it, 2020-12 (the
draft MCP names). Formats are not asserted (drafts make them annotations), and no
``$ref`` is ever fetched from the network: only references inside the schema resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing.exceptions
from jsonschema_specifications import REGISTRY as META_SCHEMAS

from nanobot_api.domain.models import JsonValue
from nanobot_api.domain.text import shorten

# What a model reads of one problem: the path and the validator's words, not the
# whole offending value (which may be a page of text).
_MAX_PROBLEM_CHARS = 400


def schema_problem(schema: Mapping[str, JsonValue]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema of its draft; None when it is."""
    try:
        _validator_class(schema).check_schema(dict(schema))
    except jsonschema.exceptions.SchemaError as exc:
        return shorten(f"{_path(exc.absolute_path, 'schema')}: {exc.message}", _MAX_PROBLEM_CHARS)
    except RecursionError:
        return "schema is nested too deeply"
    return None


class JsonSchemaArguments:
    """One tool's argument check, compiled once from its (valid) JSON Schema."""

    def __init__(self, schema: Mapping[str, JsonValue]) -> None:
        cls = _validator_class(schema)
        # The drafts' own meta-schemas and nothing else: jsonschema's default registry
        # would fetch a remote $ref over HTTP, and a tool server's schema is not ours.
        self._validator = cls(dict(schema), registry=META_SCHEMAS)

    def problem(self, arguments: JsonValue) -> str | None:
        """The most relevant way ``arguments`` break the schema, naming where
        (``arguments.media[1]: 2 is not of type 'string'``); None when they fit."""
        try:
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        except RecursionError:
            return "arguments are nested too deeply"
        except referencing.exceptions.Unresolvable as exc:
            # The tool's fault, not the model's; still a result the model can read.
            return shorten(
                f"the tool's schema has a reference that cannot be resolved ({exc})",
                _MAX_PROBLEM_CHARS,
            )
        if error is None:
            return None
        where = _path(error.absolute_path, "arguments")
        return shorten(f"{where}: {error.message}", _MAX_PROBLEM_CHARS)


def _validator_class(schema: Mapping[str, JsonValue]) -> Any:
    return jsonschema.validators.validator_for(
        dict(schema), default=jsonschema.validators.Draft202012Validator
    )


def _path(parts: Any, root: str) -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
