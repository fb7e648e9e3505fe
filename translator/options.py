"""The agent-facing fields of a chat request: tools, tool choice, structured output, stop.

Pure: :func:`parse_options` reads them from the decoded body and raises
:class:`~errors.InvalidRequest` naming the ``param`` for anything OpenAI would refuse, so that
nothing a client asks for is silently dropped (README, "Request fields").  Legacy ``functions`` /
``function_call`` become tools with ``legacy=True``, so the answer speaks ``function_call``.
``logprobs`` / ``top_logprobs`` are refused: ChatGPT never gives token probabilities.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema

from errors import InvalidRequest

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_STOP = 4

ChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None  # a JSON schema; None: no arguments asked for
    strict: bool = False


@dataclass(frozen=True, kw_only=True)
class ToolChoice:
    mode: ChoiceMode = "auto"
    name: str | None = None  # mode "named"


@dataclass(frozen=True, kw_only=True)
class ResponseFormat:
    kind: Literal["json_object", "json_schema"]
    name: str | None = None
    schema: Mapping[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True, kw_only=True)
class Options:
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    legacy_functions: bool = False  # the request used functions / function_call
    response_format: ResponseFormat | None = None
    stop: tuple[str, ...] = ()

    @property
    def calls_allowed(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode != "none"

    @property
    def call_required(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode in ("required", "named")

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


NO_OPTIONS = Options()

#: Body keys this module reads (the request parser does not report them as ignored).
FIELDS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "stop",
        "logprobs",
        "top_logprobs",
    }
)


def parse_options(body: Mapping[str, Any]) -> Options:
    """The agent fields of a chat body (already type-checked as JSON)."""
    if body.get("logprobs") is True:
        raise _unsupported("logprobs", "ChatGPT does not give token log probabilities.")
    if body.get("top_logprobs") is not None:
        raise _unsupported("top_logprobs", "ChatGPT does not give token log probabilities.")
    legacy = body.get("tools") is None and body.get("functions") is not None
    if legacy:
        tools = _functions(body["functions"])
        choice = _legacy_choice(body.get("function_call"), tools)
    else:
        tools = _tools(body.get("tools"))
        choice = _choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _type("parallel_tool_calls", "a boolean", parallel)
    return Options(
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=(parallel is not False) and not legacy,
        legacy_functions=legacy,
        response_format=_response_format(body.get("response_format")),
        stop=_stop(body.get("stop")),
    )


def _tools(raw: object) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _type("tools", "an array", raw)
    specs: list[ToolSpec] = []
    for i, item in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(item, dict):
            raise _type(where, "an object", item)
        kind = item.get("type", "function")
        if kind != "function":
            raise InvalidRequest(
                f"Invalid value for '{where}.type': {kind!r}. This server answers chat "
                "completions on ChatGPT and supports only 'function' tools here.",
                param=f"{where}.type",
                code="unsupported_value",
            )
        fn = item.get("function")
        if not isinstance(fn, dict):
            raise InvalidRequest(f"Missing required parameter: '{where}.function'.", param=where)
        specs.append(_spec(fn, f"{where}.function"))
    _unique(specs, "tools")
    return tuple(specs)


def _functions(raw: object) -> tuple[ToolSpec, ...]:
    if not isinstance(raw, list):
        raise _type("functions", "an array", raw)
    specs = []
    for i, fn in enumerate(raw):
        if not isinstance(fn, dict):
            raise _type(f"functions[{i}]", "an object", fn)
        specs.append(_spec(fn, f"functions[{i}]"))
    _unique(specs, "functions")
    return tuple(specs)


def _spec(fn: Mapping[str, Any], where: str) -> ToolSpec:
    name = fn.get("name")
    if name is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.name'.", param=f"{where}.name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"Invalid '{where}.name': string does not match pattern. Expected a string that "
            f"matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'.",
            param=f"{where}.name",
            code="invalid_value",
        )
    description = fn.get("description") or ""
    if not isinstance(description, str):
        raise _type(f"{where}.description", "a string", description)
    params = fn.get("parameters")
    if params is not None:
        _check_schema(params, f"{where}.parameters")
    strict = fn.get("strict") is True
    return ToolSpec(name=name, description=description, parameters=params, strict=strict)


def _unique(specs: list[ToolSpec], param: str) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidRequest(
                f"Invalid '{param}': the function name {spec.name!r} appears twice.",
                param=param,
                code="invalid_value",
            )
        seen.add(spec.name)


def _choice(raw: object, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if raw is None:
        return ToolChoice(mode="auto" if tools else "none")
    if not tools and raw != "none":
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
            code="invalid_value",
        )
    if raw in ("none", "auto", "required"):
        return ToolChoice(mode=raw)  # type: ignore[arg-type]  # narrowed by the test above
    if isinstance(raw, dict) and raw.get("type") == "function":
        fn = raw.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        return _named(name, tools, "tool_choice.function.name")
    if isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        raise _unsupported("tool_choice", "'allowed_tools' is not supported here.")
    raise InvalidRequest(
        f"Invalid value for 'tool_choice': {raw!r}. Supported values are: 'none', 'auto', "
        "'required' and {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
        code="invalid_value",
    )


def _legacy_choice(raw: object, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if raw is None:
        return ToolChoice(mode="auto" if tools else "none")
    if raw in ("none", "auto"):
        return ToolChoice(mode=raw)  # type: ignore[arg-type]
    if isinstance(raw, dict):
        return _named(raw.get("name"), tools, "function_call.name")
    raise InvalidRequest(
        f"Invalid value for 'function_call': {raw!r}.", param="function_call", code="invalid_value"
    )


def _named(name: object, tools: tuple[ToolSpec, ...], param: str) -> ToolChoice:
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if not any(t.name == name for t in tools):
        raise InvalidRequest(
            f"Invalid value for '{param}': no function named {name!r} was specified in the "
            "'tools' parameter.",
            param=param,
            code="invalid_value",
        )
    return ToolChoice(mode="named", name=name)


def _response_format(raw: object) -> ResponseFormat | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _type("response_format", "an object", raw)
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(kind="json_object")
    if kind != "json_schema":
        raise InvalidRequest(
            f"Invalid value for 'response_format.type': {kind!r}. Supported values are: 'text', "
            "'json_object' and 'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            "Invalid 'response_format.json_schema.name': a name of 1 to 64 letters, digits, "
            "underscores or dashes is required.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = spec.get("schema")
    if schema is not None:
        _check_schema(schema, "response_format.json_schema.schema")
    return ResponseFormat(
        kind="json_schema", name=name, schema=schema, strict=spec.get("strict") is True
    )


def _stop(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _type("stop", "one of a string or array of strings", raw)
    if len(values) > MAX_STOP:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(values)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    return tuple(dict.fromkeys(v for v in values if v))


def _check_schema(schema: object, param: str) -> None:
    if not isinstance(schema, dict):
        raise _type(param, "an object", schema)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidRequest(
            f"Invalid schema in '{param}': {e.message}", param=param, code="invalid_value"
        ) from None


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"Unsupported parameter: '{param}' is not supported by this server. {why}",
        param=param,
        code="unsupported_parameter",
    )


def _type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} "
        "instead.",
        param=param,
        code="invalid_type",
    )
