"""Reading a JSON body and checking its fields, every failure in OpenAI's own wording.

Shared by the request parsers of this package: each check raises :class:`~errors.InvalidRequest`
naming the ``param`` (``messages[0].content[1].image_url.url``) with OpenAI's message and
``code``, so that a client sees the error OpenAI would have sent.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from itertools import accumulate, count
from typing import Any

from errors import InvalidRequest

MAX_ID_LENGTH = 256
#: Deepest JSON nesting accepted (tool schemas nest a few dozen levels at most).
MAX_JSON_DEPTH = 256
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent "
    "was not valid JSON.)"
)


def load_json(raw: bytes) -> object:
    """The JSON value of ``raw``: UTF-8, nesting capped, no NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(_JSON_ERROR + " The body is not valid UTF-8.") from None
    too_deep = InvalidRequest(
        f"The JSON body of your request nests deeper than {MAX_JSON_DEPTH} levels."
    )
    if _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise too_deep
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # belt and braces: json's own limit is the recursion limit
        raise too_deep from None
    except ValueError:  # JSONDecodeError, NaN/Infinity, integers of more than 4300 digits
        raise InvalidRequest(_JSON_ERROR) from None


def _nesting_depth(raw: bytes) -> int:
    """Deepest ``[``/``{`` nesting outside strings; cheap unless the body has many brackets.

    json.loads guards its recursion with the interpreter's recursion limit, which a host process
    may have raised far enough to overflow the C stack; this keeps the limit ours.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    # Openers become 2, closers 0: after k brackets the running sum minus k is the depth.
    brackets = _JSON_STRING.sub(b"", raw).translate(_BRACKET_WEIGHTS, _NOT_BRACKETS)
    return max(map(operator.sub, accumulate(brackets), count(1)), default=0)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _quoted_list(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} and {quoted[1]}"
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def invalid_value(param: str, value: str, allowed: Sequence[str]) -> InvalidRequest:
    shown = value if len(value) <= 64 else value[:64] + "..."
    return InvalidRequest(
        f"Invalid value: '{shown}'. Supported values are: {_quoted_list(allowed)}.",
        param=param,
        code="invalid_value",
    )


def param_name(where: str | None, key: str) -> str:
    return f"{where}.{key}" if where else key


def string_value(
    value: object, param: str, *, max_length: int | None = None, non_empty: bool = False
) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if non_empty and not value:
        raise InvalidRequest(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param=param,
            code="empty_string",
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return clean_text(value)


def object_value(value: object, param: str) -> dict[str, Any]:
    if value is None:
        raise missing(param)
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def opt_string(
    obj: dict[str, Any], key: str, *, where: str | None = None, max_length: int | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    return string_value(value, param_name(where, key), max_length=max_length)


def opt_bool(obj: dict[str, Any], key: str, *, where: str | None = None) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid_type(param_name(where, key), "a boolean", value)
    return value


def opt_int(obj: dict[str, Any], key: str, *, minimum: int) -> int | None:
    value: object = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(key, "an integer", value)
    if value < minimum:
        raise InvalidRequest(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    return value


def opt_number(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_type(key, "a decimal", value)
    if value < low:
        raise InvalidRequest(
            f"Invalid '{key}': decimal below minimum value. Expected a value >= {low:g}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_below_min_value",
        )
    if value > high:
        raise InvalidRequest(
            f"Invalid '{key}': decimal above maximum value. Expected a value <= {high:g}, "
            f"but got {value} instead.",
            param=key,
            code="decimal_above_max_value",
        )
    return float(value)


def opt_choice(
    obj: dict[str, Any], key: str, allowed: Sequence[str], *, where: str | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    param = param_name(where, key)
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if value not in allowed:
        raise invalid_value(param, value, allowed)
    return value


def clean_text(text: str) -> str:
    """Replace unpaired surrogates (legal in JSON escapes, not in UTF-8) with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # json.loads already paired every valid surrogate pair, so any left is unpaired.
        return _SURROGATE.sub("\ufffd", text)
    return text


Check = Callable[[object, str], None]


def check_kind(*kinds: type) -> Check:
    names = {bool: "a boolean", int: "an integer", str: "a string", list: "an array"}
    names.update({dict: "an object", float: "a decimal"})
    expected = " or ".join(names[k] for k in kinds)

    def check(value: object, param: str) -> None:
        ok = any(
            isinstance(value, k) and not (k in (int, float) and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            raise invalid_type(param, expected, value)

    return check
