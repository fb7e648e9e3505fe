"""Arguments and structured answers checked against their JSON schemas (``jsonschema``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema

from translator.options import ResponseFormat, ToolSpec

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)


class Invalid(ValueError):
    """A model's output that does not satisfy its schema; ``code`` names the failure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unfence(text: str) -> str:
    """``text`` without one markdown code fence around all of it, and stripped."""
    m = _FENCE.match(text)
    return (m.group(1) if m else text).strip()


def load_json(text: str, code: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise Invalid(code, f"not valid JSON ({e})") from None


def check(value: Any, schema: Mapping[str, Any] | None, code: str) -> None:
    if not schema:
        return
    errors = sorted(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value), key=str)
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise Invalid(code, f"{first.message} at {where}")


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def call_arguments(tool: ToolSpec, body: str) -> str:
    """The arguments of a call to ``tool`` as a JSON object text, or Invalid."""
    text = unfence(body)
    if not text:
        value: Any = {}
        text = "{}"
    else:
        value = load_json(text, "tool_call_malformed")
    if not isinstance(value, dict):
        raise Invalid("tool_call_malformed", "the arguments are not a JSON object")
    check(value, tool.parameters, "tool_call_invalid_arguments")
    return text


def structured_answer(fmt: ResponseFormat, text: str) -> str:
    """The JSON text of a structured answer, or Invalid naming what is wrong."""
    body = unfence(text)
    if not body:
        raise Invalid("structured_output_missing", "the answer is empty, not JSON")
    value = load_json(body, "structured_output_invalid_json")
    if fmt.kind == "json_object" and not isinstance(value, dict):
        raise Invalid("structured_output_invalid_json", "the answer is not a JSON object")
    check(value, fmt.schema, "structured_output_schema_mismatch")
    return body
