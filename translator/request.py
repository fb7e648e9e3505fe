"""OpenAI chat-completion requests in, ChatGPT conversation bodies out.  Pure: no I/O.

:func:`parse_chat_request` validates a ``POST /v1/chat/completions`` body the way OpenAI does and
raises :class:`~errors.InvalidRequest` (400) naming the ``param``, in OpenAI's wording,
for every problem; a body over the size limit is :class:`~errors.PayloadTooLarge`
(413).  :func:`build_conversation_body` and :func:`build_prepare_body` turn the result into the
backend's JSON (chatgpt-backend.md §4, chatgpt-backend-2026.md §2.4-2.5).

Tools, ``tool_choice``, ``parallel_tool_calls``, legacy ``functions`` / ``function_call``,
``response_format``, ``stop`` and ``logprobs`` / ``top_logprobs`` (refused) are read by
:mod:`translator.options` into ``ChatRequest.options``.  Other fields ChatGPT cannot honour are
type-checked, then **accepted and ignored** (they are listed in ``ChatRequest.ignored`` for
logging): ``temperature``, ``top_p``, ``presence_penalty``, ``frequency_penalty``,
``logit_bias``, ``seed``, ``metadata``, ``store``, ``service_tier``, ``modalities``, ``audio``,
``prediction``, ``web_search_options``, ``verbosity``, ``prompt_cache_key``,
``safety_identifier`` and ``user`` (kept, but not sent upstream), plus a message's ``name`` for
system, developer, user and assistant messages.  ``max_tokens`` / ``max_completion_tokens`` are
kept for the response side, which cuts the answer there.  Unknown top-level keys are ignored too
(the original did; rejecting them would break clients that send vendor extensions).  ``n`` above
1 is rejected: ChatGPT answers once.

Non-standard keys the original read from the body: ``conversation_id``, ``parent_message_id``
(continue a ChatGPT conversation), ``history_disabled`` (bool, overrides the setting) and
``Chatgpt-Account-Id`` (Team workspace; the key is matched case-insensitively).
"""

from __future__ import annotations

import json
import operator
import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate, count
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from errors import InvalidRequest, PayloadTooLarge
from translator.models import ResolvedModel
from translator.options import FIELDS as OPTION_FIELDS
from translator.options import NO_OPTIONS, Options, parse_options

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
ROLES: tuple[Role, ...] = ("system", "assistant", "user", "function", "tool", "developer")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
IMAGE_DETAILS = ("auto", "low", "high")
AUDIO_FORMATS = ("wav", "mp3")

#: Content part types OpenAI accepts, per role.
PART_TYPES: Mapping[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}

#: Backend placeholder parent for a new conversation (reference §7.2).
ROOT_PARENT = "client-created-root"

#: ``reasoning_effort`` → 2026 ``thinking_effort`` (chatgpt-backend-2026.md §1.7, aurora's map;
#: only the three values every Thinking lane accepts).
THINKING_EFFORT: Mapping[str, str] = {
    "none": "standard",
    "minimal": "standard",
    "low": "standard",
    "medium": "extended",
    "high": "max",
    "xhigh": "max",
}

_MAX_ID_LENGTH = 256
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


# --- parsed request -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TextPart:
    text: str


@dataclass(frozen=True, kw_only=True)
class ImagePart:
    url: str  # https://… or data:image/…;base64,…
    detail: str | None = None  # auto, low, high


@dataclass(frozen=True, kw_only=True)
class FilePart:
    file_data: str | None = None  # data:…;base64,…
    filename: str | None = None
    file_id: str | None = None  # an OpenAI Files id: cannot be fetched from here


@dataclass(frozen=True, kw_only=True)
class InputAudioPart:
    data: str  # base64
    format: str  # wav, mp3


Part = TextPart | ImagePart | FilePart | InputAudioPart


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str | None  # None for a legacy ``function_call``
    name: str
    arguments: str


@dataclass(frozen=True, kw_only=True)
class Message:
    role: Role
    content: tuple[Part, ...] = ()  # string content is one TextPart; null is ()
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        """The text parts joined by newlines (refusals count as text)."""
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None  # max_completion_tokens, else max_tokens
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    conversation_id: str | None = None
    parent_message_id: str | None = None
    history_disabled: bool | None = None  # None: use the setting
    account_id: str | None = None  # body key Chatgpt-Account-Id
    ignored: tuple[str, ...] = ()  # fields present but not honoured, for logs
    options: Options = NO_OPTIONS  # tools, structured output, stop (translator/options.py)


# --- uploads hook ---------------------------------------------------------------------------


class AttachmentLike(Protocol):
    """An uploaded part, as the I/O layer reports it (chatgpt-backend.md §7)."""

    @property
    def file_id(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def is_image(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Attachment:
    file_id: str
    size: int
    name: str
    mime_type: str
    width: int | None = None
    height: int | None = None
    is_image: bool = False


#: (message index, part index) → the upload of that part.
Attachments = Mapping[tuple[int, int], AttachmentLike]


_LEADING_URL = re.compile(r"\s*(https?://[^\s]+)(?:\s+|$)", re.IGNORECASE)


def split_leading_urls(text: str) -> tuple[tuple[str, ...], str]:
    """``UPLOAD_BY_URL`` (reference §7.3): the URLs a text starts with, and the rest.

    ``"https://a/x.png https://b/y.pdf what are these?"`` gives both URLs and
    ``"what are these?"``; a text that does not start with ``http`` is left whole.
    """
    urls: list[str] = []
    rest = text
    while (match := _LEADING_URL.match(rest)) is not None:
        urls.append(match.group(1))
        rest = rest[match.end() :]
    return tuple(urls), (rest if urls else text)


# --- parsing --------------------------------------------------------------------------------


def parse_chat_request(raw: bytes, *, max_body_bytes: int) -> ChatRequest:
    """Validate a chat-completions body; every failure is an InvalidRequest naming its param."""
    if len(raw) > max_body_bytes:
        raise PayloadTooLarge(
            f"Request body too large: {len(raw)} bytes, the limit is {max_body_bytes} bytes."
        )
    body = _load_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"Invalid type for request body: expected an object, but got {_type_name(body)} "
            "instead.",
            code="invalid_type",
        )

    if body.get("model") is None:
        raise InvalidRequest("'model' is a required property", param="model")
    model = _string(body["model"], "model", max_length=_MAX_ID_LENGTH, non_empty=True)
    if body.get("messages") is None:
        raise InvalidRequest("'messages' is a required property", param="messages")
    raw_messages = body["messages"]
    if not isinstance(raw_messages, list):
        raise _invalid_type("messages", "an array", raw_messages)
    if not raw_messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    messages = tuple(_parse_message(i, m) for i, m in enumerate(raw_messages))

    stream = _opt_bool(body, "stream") or False
    include_usage = _stream_options(body.get("stream_options"), stream)

    n = _opt_int(body, "n", minimum=1)
    if n is not None and n > 1:
        raise InvalidRequest(
            f"Invalid 'n': {n} completions were requested, but this server can only return one "
            "(ChatGPT answers once). Use n=1 or leave it out.",
            param="n",
            code="unsupported_value",
        )
    max_tokens = _opt_int(body, "max_tokens", minimum=1)
    max_completion_tokens = _opt_int(body, "max_completion_tokens", minimum=1)
    temperature = _opt_number(body, "temperature", 0, 2)
    top_p = _opt_number(body, "top_p", 0, 1)
    reasoning_effort = _opt_choice(body, "reasoning_effort", REASONING_EFFORTS)
    user = _opt_string(body, "user")
    for field, check in _IGNORED_CHECKS.items():
        if body.get(field) is not None:
            check(body[field], field)
    options = parse_options(body)

    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_completion_tokens if max_completion_tokens is not None else max_tokens,
        temperature=temperature,
        top_p=top_p,
        reasoning_effort=reasoning_effort,
        user=user,
        conversation_id=_opt_string(body, "conversation_id", max_length=_MAX_ID_LENGTH),
        parent_message_id=_opt_string(body, "parent_message_id", max_length=_MAX_ID_LENGTH),
        history_disabled=_opt_bool(body, "history_disabled"),
        account_id=_account_id(body),
        options=options,
        ignored=tuple(
            sorted(
                k
                for k, v in body.items()
                if k not in _READ_FIELDS and k.lower() != "chatgpt-account-id" and v is not None
            )
        ),
    )


def _load_json(raw: bytes) -> object:
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


def _parse_message(i: int, raw: object) -> Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise _invalid_type(where, "an object", raw)
    role_value = raw.get("role")
    if role_value is None:
        raise _missing(f"{where}.role")
    if not isinstance(role_value, str):
        raise _invalid_type(f"{where}.role", "a string", role_value)
    role = next((r for r in ROLES if r == role_value), None)
    if role is None:
        raise _invalid_value(f"{where}.role", role_value, ROLES)

    tool_calls = _tool_calls(raw, where) if role == "assistant" else ()
    content_value = raw.get("content")
    content: tuple[Part, ...]
    if content_value is None:
        # OpenAI: content is required unless an assistant message carries tool calls; a
        # function result may be null.
        if not (role == "assistant" and tool_calls) and role != "function":
            if "content" in raw:
                raise _invalid_type(f"{where}.content", "one of a string or array of objects", None)
            raise _missing(f"{where}.content")
        content = ()
    elif isinstance(content_value, str):
        content = (TextPart(text=_clean(content_value)),)
    elif isinstance(content_value, list):
        if not content_value:
            raise InvalidRequest(
                f"Invalid '{where}.content': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                param=f"{where}.content",
                code="empty_array",
            )
        content = tuple(
            _parse_part(f"{where}.content[{j}]", part, role) for j, part in enumerate(content_value)
        )
    else:
        raise _invalid_type(
            f"{where}.content", "one of a string or array of objects", content_value
        )

    name = _opt_string(raw, "name", where=where, max_length=_MAX_ID_LENGTH)
    if role == "function" and name is None:
        raise _missing(f"{where}.name")
    tool_call_id = _opt_string(raw, "tool_call_id", where=where, max_length=_MAX_ID_LENGTH)
    if role == "tool" and tool_call_id is None:
        raise _missing(f"{where}.tool_call_id")
    return Message(
        role=role,
        content=content,
        name=name,
        tool_call_id=tool_call_id if role == "tool" else None,
        tool_calls=tool_calls,
    )


def _parse_part(where: str, raw: object, role: str) -> Part:
    if not isinstance(raw, dict):
        raise _invalid_type(where, "an object", raw)
    kind = raw.get("type")
    if kind is None:
        raise _missing(f"{where}.type")
    if not isinstance(kind, str):
        raise _invalid_type(f"{where}.type", "a string", kind)
    if kind not in PART_TYPES[role]:
        raise _invalid_value(f"{where}.type", kind, PART_TYPES[role])
    if kind in ("text", "refusal"):
        value = raw.get(kind)
        if value is None:
            raise _missing(f"{where}.{kind}")
        return TextPart(text=_clean(_string(value, f"{where}.{kind}")))
    if kind == "image_url":
        image = _object(raw.get("image_url"), f"{where}.image_url")
        url = image.get("url")
        if url is None:
            raise _missing(f"{where}.image_url.url")
        detail = _opt_choice(image, "detail", IMAGE_DETAILS, where=f"{where}.image_url")
        return ImagePart(url=_string(url, f"{where}.image_url.url", non_empty=True), detail=detail)
    if kind == "file":
        file = _object(raw.get("file"), f"{where}.file")
        file_data = _opt_string(file, "file_data", where=f"{where}.file")
        file_id = _opt_string(file, "file_id", where=f"{where}.file")
        if not file_data and not file_id:
            raise InvalidRequest(
                f"Invalid '{where}.file': one of 'file_data' or 'file_id' is required.",
                param=f"{where}.file",
                code="missing_required_parameter",
            )
        filename = _opt_string(file, "filename", where=f"{where}.file")
        return FilePart(
            file_data=file_data, filename=filename and _clean(filename), file_id=file_id
        )
    audio = _object(raw.get("input_audio"), f"{where}.input_audio")
    data = audio.get("data")
    if data is None:
        raise _missing(f"{where}.input_audio.data")
    audio_format = _opt_choice(audio, "format", AUDIO_FORMATS, where=f"{where}.input_audio")
    if audio_format is None:
        raise _missing(f"{where}.input_audio.format")
    return InputAudioPart(data=_string(data, f"{where}.input_audio.data"), format=audio_format)


def _tool_calls(raw: dict[str, Any], where: str) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    value = raw.get("tool_calls")
    if value is not None:
        if not isinstance(value, list):
            raise _invalid_type(f"{where}.tool_calls", "an array", value)
        for k, call in enumerate(value):
            at = f"{where}.tool_calls[{k}]"
            call_obj = _object(call, at)
            call_id = call_obj.get("id")
            if call_id is None:
                raise _missing(f"{at}.id")
            function = _object(call_obj.get("function"), f"{at}.function")
            calls.append(_function(function, f"{at}.function", _string(call_id, f"{at}.id")))
    legacy = raw.get("function_call")
    if legacy is not None:
        calls.append(_function(_object(legacy, f"{where}.function_call"), f"{where}.function_call"))
    return tuple(calls)


def _function(obj: dict[str, Any], where: str, call_id: str | None = None) -> ToolCall:
    name = obj.get("name")
    if name is None:
        raise _missing(f"{where}.name")
    arguments = _opt_string(obj, "arguments", where=where) or ""
    return ToolCall(id=call_id, name=_string(name, f"{where}.name"), arguments=_clean(arguments))


def _stream_options(value: object, stream: bool) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        raise _invalid_type("stream_options", "an object", value)
    if not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return _opt_bool(value, "include_usage", where="stream_options") or False


def _account_id(body: dict[str, Any]) -> str | None:
    for key, value in body.items():
        if key.lower() == "chatgpt-account-id" and value is not None:
            return _string(value, key, max_length=_MAX_ID_LENGTH, non_empty=True)
    return None


# --- small validators, each raising OpenAI's wording ----------------------------------------


def _type_name(value: object) -> str:
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


def _invalid_type(param: str, expected: str, value: object) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> InvalidRequest:
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


def _invalid_value(param: str, value: str, allowed: Sequence[str]) -> InvalidRequest:
    shown = value if len(value) <= 64 else value[:64] + "..."
    return InvalidRequest(
        f"Invalid value: '{shown}'. Supported values are: {_quoted_list(allowed)}.",
        param=param,
        code="invalid_value",
    )


def _param(where: str | None, key: str) -> str:
    return f"{where}.{key}" if where else key


def _string(
    value: object, param: str, *, max_length: int | None = None, non_empty: bool = False
) -> str:
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
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
    return _clean(value)


def _object(value: object, param: str) -> dict[str, Any]:
    if value is None:
        raise _missing(param)
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object", value)
    return value


def _opt_string(
    obj: dict[str, Any], key: str, *, where: str | None = None, max_length: int | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    return _string(value, _param(where, key), max_length=max_length)


def _opt_bool(obj: dict[str, Any], key: str, *, where: str | None = None) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _invalid_type(_param(where, key), "a boolean", value)
    return value


def _opt_int(obj: dict[str, Any], key: str, *, minimum: int) -> int | None:
    value: object = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(key, "an integer", value)
    if value < minimum:
        raise InvalidRequest(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    return value


def _opt_number(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid_type(key, "a decimal", value)
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


def _opt_choice(
    obj: dict[str, Any], key: str, allowed: Sequence[str], *, where: str | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    param = _param(where, key)
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
    if value not in allowed:
        raise _invalid_value(param, value, allowed)
    return value


def _clean(text: str) -> str:
    """Replace unpaired surrogates (legal in JSON escapes, not in UTF-8) with U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # json.loads already paired every valid surrogate pair, so any left is unpaired.
        return _SURROGATE.sub("\ufffd", text)
    return text


Check = Callable[[object, str], None]


def _check_kind(*kinds: type) -> Check:
    names = {bool: "a boolean", int: "an integer", str: "a string", list: "an array"}
    names.update({dict: "an object", float: "a decimal"})
    expected = " or ".join(names[k] for k in kinds)

    def check(value: object, param: str) -> None:
        ok = any(
            isinstance(value, k) and not (k in (int, float) and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            raise _invalid_type(param, expected, value)

    return check


def _check_penalty(value: object, param: str) -> None:
    _opt_number({param: value}, param, -2, 2)


def _check_stop(value: object, param: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid_type(param, "one of a string or array of strings", value)


#: Accepted-but-ignored fields and their type checks.
_IGNORED_CHECKS: Mapping[str, Check] = {
    "stop": _check_stop,
    "presence_penalty": _check_penalty,
    "frequency_penalty": _check_penalty,
    "logit_bias": _check_kind(dict),
    "logprobs": _check_kind(bool),
    "top_logprobs": _check_kind(int),
    "seed": _check_kind(int),
    "tools": _check_kind(list),
    "tool_choice": _check_kind(str, dict),
    "parallel_tool_calls": _check_kind(bool),
    "functions": _check_kind(list),
    "function_call": _check_kind(str, dict),
    "response_format": _check_kind(dict),
    "metadata": _check_kind(dict),
    "store": _check_kind(bool),
    "service_tier": _check_kind(str),
    "modalities": _check_kind(list),
    "audio": _check_kind(dict),
    "prediction": _check_kind(dict),
    "web_search_options": _check_kind(dict),
    "verbosity": _check_kind(str),
    "prompt_cache_key": _check_kind(str),
    "safety_identifier": _check_kind(str),
}

#: Fields this module honours; everything else present is reported in ``ChatRequest.ignored``.
_READ_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "reasoning_effort",
        "conversation_id",
        "parent_message_id",
        "history_disabled",
        *OPTION_FIELDS,
    }
)


# --- building backend bodies ----------------------------------------------------------------


def timezone_offset_for(timezone: str, when: datetime) -> int:
    """JavaScript's ``getTimezoneOffset()`` for ``timezone`` at ``when`` (aware datetime).

    Positive west of UTC: America/New_York is 300 in winter and 240 in summer (the original sent
    Los Angeles with -480, the offset of UTC+8, reference §7.2).
    """
    offset = when.astimezone(ZoneInfo(timezone)).utcoffset()
    assert offset is not None
    return -int(offset.total_seconds() // 60)


def thinking_effort_for(model: ResolvedModel, reasoning_effort: str | None) -> str | None:
    """The 2026 ``thinking_effort`` for a thinking model, or None to let the server choose."""
    if not model.thinking or reasoning_effort is None:
        return None
    return THINKING_EFFORT.get(reasoning_effort)


def contextual_info(rng: random.Random) -> dict[str, Any]:
    """Plausible ``client_contextual_info``: a common screen with a browser window inside it."""
    screen_width, screen_height, pixel_ratio = rng.choice(
        [(1920, 1080, 1), (2560, 1440, 1), (1536, 864, 1.25), (1440, 900, 2), (1280, 800, 2)]
    )
    return {
        "is_dark_mode": rng.random() < 0.4,
        "time_since_loaded": rng.randint(2_000, 120_000),
        "page_height": rng.randint(screen_height * 3 // 5, screen_height - 120),
        "page_width": rng.randint(screen_width * 3 // 5, screen_width),
        "pixel_ratio": pixel_ratio,
        "screen_height": screen_height,
        "screen_width": screen_width,
        "app_name": "chatgpt.com",
    }


def build_conversation_body(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    history_disabled: bool,
    attachments_by_part: Attachments | None = None,
    timezone: str,
    timezone_offset_min: int,
    rng: random.Random,
    dialect: Literal["classic", "2026"] = "classic",
    client_contextual_info: Mapping[str, Any] | None = None,
    prepare_state: Literal["success", "failure", "none"] = "success",
) -> dict[str, Any]:
    """The JSON body of ``POST {base}/conversation`` (classic) or ``{base}/f/conversation``.

    ``history_disabled`` is the setting; the request's own ``history_disabled`` overrides it.
    ``attachments_by_part`` maps (message index, part index) to the upload of an image, file or
    audio part; a part without one is replaced by a short text note so that the model knows
    something was left out.  ``client_contextual_info`` comes from the browser profile when
    there is one, else it is made up from ``rng``.  The whole client history goes out in one
    ``action: "next"`` (reference §7.3), also when ``conversation_id`` continues a conversation.
    """
    _check_timezone(timezone, timezone_offset_min)
    messages = _map_messages(req.messages, attachments_by_part or {}, rng, dialect)
    if model.image and messages:
        messages[-1]["metadata"]["system_hints"] = ["picture_v2"]
    body = _common_fields(
        req,
        model=model,
        timezone=timezone,
        offset=timezone_offset_min,
        rng=rng,
        info=client_contextual_info,
    )
    body["messages"] = messages
    body["enable_message_followups"] = False
    body["force_use_sse"] = True
    body["history_and_training_disabled"] = (
        req.history_disabled if req.history_disabled is not None else history_disabled
    )
    if dialect == "2026":
        body["client_prepare_state"] = prepare_state
        body["supports_buffering"] = True
        body["force_parallel_switch"] = "auto"
        effort = thinking_effort_for(model, req.reasoning_effort)
        if effort is not None:
            body["thinking_effort"] = effort
    else:
        # Flags the original's body always carried (reference §7.2).
        body["force_paragen"] = False
        body["force_paragen_model_slug"] = ""
        body["force_rate_limit"] = False
    return body


def build_prepare_body(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    timezone: str,
    timezone_offset_min: int,
    rng: random.Random,
    client_contextual_info: Mapping[str, Any] | None = None,
    prepare_state: Literal["none", "sent", "success"] = "none",
) -> dict[str, Any]:
    """The body of the 2026 ``POST {base}/f/conversation/prepare`` (chatgpt-backend-2026.md §2.4):
    the conversation body's shape without ``messages``.  With state ``sent`` or ``success`` it
    carries a ``partial_query`` of the last user text's first five characters, as aurora does.
    """
    _check_timezone(timezone, timezone_offset_min)
    body = _common_fields(
        req,
        model=model,
        timezone=timezone,
        offset=timezone_offset_min,
        rng=rng,
        info=client_contextual_info,
    )
    body["supports_buffering"] = True
    body["client_prepare_state"] = prepare_state
    effort = thinking_effort_for(model, req.reasoning_effort)
    if effort is not None:
        body["thinking_effort"] = effort
    if prepare_state != "none":
        last_user = next((m for m in reversed(req.messages) if m.role == "user"), None)
        if last_user is not None:
            body["partial_query"] = {
                "id": _uuid(rng),
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": [last_user.text[:5]]},
            }
    return body


def _check_timezone(timezone: str, offset: int) -> None:
    # Programming or settings errors, not client errors: real offsets span UTC-12 to UTC+14.
    if not timezone:
        raise ValueError("timezone must be an IANA name such as 'America/New_York'")
    if isinstance(offset, bool) or not isinstance(offset, int) or not -840 <= offset <= 720:
        raise ValueError(f"timezone_offset_min must be minutes in -840..720, got {offset!r}")


def _common_fields(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    timezone: str,
    offset: int,
    rng: random.Random,
    info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "next",
        "parent_message_id": req.parent_message_id or ROOT_PARENT,
        "model": model.slug,
    }
    if req.conversation_id:
        body["conversation_id"] = req.conversation_id
    body["timezone_offset_min"] = offset
    body["timezone"] = timezone
    body["conversation_mode"] = (
        {"kind": "gizmo_interaction", "gizmo_id": model.gizmo_id}
        if model.gizmo_id
        else {"kind": "primary_assistant"}
    )
    body["system_hints"] = ["picture_v2"] if model.image else []
    body["supported_encodings"] = ["v1"]
    body["client_contextual_info"] = dict(info) if info is not None else contextual_info(rng)
    body["paragen_cot_summary_display_override"] = "allow"
    return body


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _map_messages(
    messages: Sequence[Message],
    attachments: Attachments,
    rng: random.Random,
    dialect: str,
) -> list[dict[str, Any]]:
    tool_names = {c.id: c.name for m in messages for c in m.tool_calls if c.id is not None}
    return [
        _map_message(i, m, attachments, rng, dialect, tool_names) for i, m in enumerate(messages)
    ]


def _map_message(
    i: int,
    message: Message,
    attachments: Attachments,
    rng: random.Random,
    dialect: str,
    tool_names: Mapping[str, str],
) -> dict[str, Any]:
    # ChatGPT has no developer role on the web; developer instructions are system instructions.
    # Tool and function results have no web equivalent either: they go in as labelled user text.
    role = {"developer": "system", "tool": "user", "function": "user"}.get(
        message.role, message.role
    )
    segments: list[str | dict[str, Any]] = []
    metadata_attachments: list[dict[str, Any]] = []
    if message.role == "tool":
        name = tool_names.get(message.tool_call_id or "")
        label = f"function {name}, " if name else ""
        segments.append(f"[Tool result ({label}tool_call_id {message.tool_call_id})]")
    elif message.role == "function":
        segments.append(f"[Function result ({message.name})]")

    for j, part in enumerate(message.content):
        if isinstance(part, TextPart):
            segments.append(part.text)
            continue
        attachment = attachments.get((i, j))
        if attachment is None:
            segments.append(_missing_note(part))
            continue
        entry: dict[str, Any] = {
            "id": attachment.file_id,
            "size": attachment.size,
            "name": attachment.name,
            "mime_type": attachment.mime_type,
        }
        if attachment.is_image:
            entry["width"] = attachment.width
            entry["height"] = attachment.height
            segments.append(
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": _asset_pointer(attachment.file_id),
                    "size_bytes": attachment.size,
                    "width": attachment.width,
                    "height": attachment.height,
                }
            )
        if dialect == "2026":
            entry["source"] = "local"
            entry["is_big_paste"] = False
        metadata_attachments.append(entry)

    for call in message.tool_calls:
        ident = f" (id {call.id})" if call.id else ""
        segments.append(f"[Tool call{ident}: {call.name}({call.arguments})]")

    parts = _merge_text(segments)
    metadata: dict[str, Any] = {}
    if metadata_attachments:
        metadata["attachments"] = metadata_attachments
    if any(isinstance(p, dict) for p in parts):
        content: dict[str, Any] = {"content_type": "multimodal_text", "parts": parts}
    else:
        content = {"content_type": "text", "parts": ["\n".join(str(p) for p in parts)]}
    return {
        "id": _uuid(rng),
        "author": {"role": role},
        "content": content,
        "metadata": metadata,
    }


def _merge_text(segments: Sequence[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
    """Adjacent text segments joined by newlines; asset pointers kept in place."""
    merged: list[str | dict[str, Any]] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] = f"{merged[-1]}\n{segment}"
        else:
            merged.append(segment)
    return merged or [""]


def _asset_pointer(file_id: str) -> str:
    # New-style ids (file_00000000…) live in "sediment", old ones (file-…) in the file service
    # (fixture other/heygen_f_conversation_request_body_imagegen_2026-04.json, reference §7.3).
    scheme = "sediment" if file_id.startswith("file_") else "file-service"
    return f"{scheme}://{file_id}"


def _missing_note(part: Part) -> str:
    if isinstance(part, ImagePart):
        where = "inline data" if part.url.startswith("data:") else part.url[:200]
        return f"[image not attached: {where}]"
    if isinstance(part, FilePart):
        return f"[file not attached: {part.filename or part.file_id or 'inline data'}]"
    return "[audio not attached]"
