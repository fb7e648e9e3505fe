"""``POST /v1/chat/completions`` bodies in, :class:`~translator.request.values.ChatRequest` out.

:func:`parse_chat_request` validates a body the way OpenAI does and raises
:class:`~errors.InvalidRequest` (400) naming the ``param``, in OpenAI's wording, for every
problem; a body over the size limit is :class:`~errors.PayloadTooLarge` (413).

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

from collections.abc import Mapping
from typing import Any

from errors import InvalidRequest, PayloadTooLarge
from translator.options import FIELDS as OPTION_FIELDS
from translator.options import parse_options
from translator.request.validation import (
    MAX_ID_LENGTH,
    Check,
    check_kind,
    clean_text,
    invalid_type,
    invalid_value,
    load_json,
    missing,
    object_value,
    opt_bool,
    opt_choice,
    opt_int,
    opt_number,
    opt_string,
    string_value,
    type_name,
)
from translator.request.values import (
    ROLES,
    ChatRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    Part,
    TextPart,
    ToolCall,
)

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


# --- parsing --------------------------------------------------------------------------------


def parse_chat_request(raw: bytes, *, max_body_bytes: int) -> ChatRequest:
    """Validate a chat-completions body; every failure is an InvalidRequest naming its param."""
    if len(raw) > max_body_bytes:
        raise PayloadTooLarge(
            f"Request body too large: {len(raw)} bytes, the limit is {max_body_bytes} bytes."
        )
    body = load_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"Invalid type for request body: expected an object, but got {type_name(body)} "
            "instead.",
            code="invalid_type",
        )

    if body.get("model") is None:
        raise InvalidRequest("'model' is a required property", param="model")
    model = string_value(body["model"], "model", max_length=MAX_ID_LENGTH, non_empty=True)
    if body.get("messages") is None:
        raise InvalidRequest("'messages' is a required property", param="messages")
    raw_messages = body["messages"]
    if not isinstance(raw_messages, list):
        raise invalid_type("messages", "an array", raw_messages)
    if not raw_messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    messages = tuple(_parse_message(i, m) for i, m in enumerate(raw_messages))

    stream = opt_bool(body, "stream") or False
    include_usage = _stream_options(body.get("stream_options"), stream)

    n = opt_int(body, "n", minimum=1)
    if n is not None and n > 1:
        raise InvalidRequest(
            f"Invalid 'n': {n} completions were requested, but this server can only return one "
            "(ChatGPT answers once). Use n=1 or leave it out.",
            param="n",
            code="unsupported_value",
        )
    max_tokens = opt_int(body, "max_tokens", minimum=1)
    max_completion_tokens = opt_int(body, "max_completion_tokens", minimum=1)
    temperature = opt_number(body, "temperature", 0, 2)
    top_p = opt_number(body, "top_p", 0, 1)
    reasoning_effort = opt_choice(body, "reasoning_effort", REASONING_EFFORTS)
    user = opt_string(body, "user")
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
        conversation_id=opt_string(body, "conversation_id", max_length=MAX_ID_LENGTH),
        parent_message_id=opt_string(body, "parent_message_id", max_length=MAX_ID_LENGTH),
        history_disabled=opt_bool(body, "history_disabled"),
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


def _parse_message(i: int, raw: object) -> Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise invalid_type(where, "an object", raw)
    role_value = raw.get("role")
    if role_value is None:
        raise missing(f"{where}.role")
    if not isinstance(role_value, str):
        raise invalid_type(f"{where}.role", "a string", role_value)
    role = next((r for r in ROLES if r == role_value), None)
    if role is None:
        raise invalid_value(f"{where}.role", role_value, ROLES)

    tool_calls = _tool_calls(raw, where) if role == "assistant" else ()
    content_value = raw.get("content")
    content: tuple[Part, ...]
    if content_value is None:
        # OpenAI: content is required unless an assistant message carries tool calls; a
        # function result may be null.
        if not (role == "assistant" and tool_calls) and role != "function":
            if "content" in raw:
                raise invalid_type(f"{where}.content", "one of a string or array of objects", None)
            raise missing(f"{where}.content")
        content = ()
    elif isinstance(content_value, str):
        content = (TextPart(text=clean_text(content_value)),)
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
        raise invalid_type(f"{where}.content", "one of a string or array of objects", content_value)

    name = opt_string(raw, "name", where=where, max_length=MAX_ID_LENGTH)
    if role == "function" and name is None:
        raise missing(f"{where}.name")
    tool_call_id = opt_string(raw, "tool_call_id", where=where, max_length=MAX_ID_LENGTH)
    if role == "tool" and tool_call_id is None:
        raise missing(f"{where}.tool_call_id")
    return Message(
        role=role,
        content=content,
        name=name,
        tool_call_id=tool_call_id if role == "tool" else None,
        tool_calls=tool_calls,
    )


def _parse_part(where: str, raw: object, role: str) -> Part:
    if not isinstance(raw, dict):
        raise invalid_type(where, "an object", raw)
    kind = raw.get("type")
    if kind is None:
        raise missing(f"{where}.type")
    if not isinstance(kind, str):
        raise invalid_type(f"{where}.type", "a string", kind)
    if kind not in PART_TYPES[role]:
        raise invalid_value(f"{where}.type", kind, PART_TYPES[role])
    if kind in ("text", "refusal"):
        value = raw.get(kind)
        if value is None:
            raise missing(f"{where}.{kind}")
        return TextPart(text=clean_text(string_value(value, f"{where}.{kind}")))
    if kind == "image_url":
        image = object_value(raw.get("image_url"), f"{where}.image_url")
        url = image.get("url")
        if url is None:
            raise missing(f"{where}.image_url.url")
        detail = opt_choice(image, "detail", IMAGE_DETAILS, where=f"{where}.image_url")
        return ImagePart(
            url=string_value(url, f"{where}.image_url.url", non_empty=True), detail=detail
        )
    if kind == "file":
        file = object_value(raw.get("file"), f"{where}.file")
        file_data = opt_string(file, "file_data", where=f"{where}.file")
        file_id = opt_string(file, "file_id", where=f"{where}.file")
        if not file_data and not file_id:
            raise InvalidRequest(
                f"Invalid '{where}.file': one of 'file_data' or 'file_id' is required.",
                param=f"{where}.file",
                code="missing_required_parameter",
            )
        filename = opt_string(file, "filename", where=f"{where}.file")
        return FilePart(
            file_data=file_data, filename=filename and clean_text(filename), file_id=file_id
        )
    audio = object_value(raw.get("input_audio"), f"{where}.input_audio")
    data = audio.get("data")
    if data is None:
        raise missing(f"{where}.input_audio.data")
    audio_format = opt_choice(audio, "format", AUDIO_FORMATS, where=f"{where}.input_audio")
    if audio_format is None:
        raise missing(f"{where}.input_audio.format")
    return InputAudioPart(data=string_value(data, f"{where}.input_audio.data"), format=audio_format)


def _tool_calls(raw: dict[str, Any], where: str) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    value = raw.get("tool_calls")
    if value is not None:
        if not isinstance(value, list):
            raise invalid_type(f"{where}.tool_calls", "an array", value)
        for k, call in enumerate(value):
            at = f"{where}.tool_calls[{k}]"
            call_obj = object_value(call, at)
            call_id = call_obj.get("id")
            if call_id is None:
                raise missing(f"{at}.id")
            function = object_value(call_obj.get("function"), f"{at}.function")
            calls.append(_function(function, f"{at}.function", string_value(call_id, f"{at}.id")))
    legacy = raw.get("function_call")
    if legacy is not None:
        calls.append(
            _function(object_value(legacy, f"{where}.function_call"), f"{where}.function_call")
        )
    return tuple(calls)


def _function(obj: dict[str, Any], where: str, call_id: str | None = None) -> ToolCall:
    name = obj.get("name")
    if name is None:
        raise missing(f"{where}.name")
    arguments = opt_string(obj, "arguments", where=where) or ""
    return ToolCall(
        id=call_id, name=string_value(name, f"{where}.name"), arguments=clean_text(arguments)
    )


def _stream_options(value: object, stream: bool) -> bool:
    if value is None:
        return False
    if not isinstance(value, dict):
        raise invalid_type("stream_options", "an object", value)
    if not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return opt_bool(value, "include_usage", where="stream_options") or False


def _account_id(body: dict[str, Any]) -> str | None:
    for key, value in body.items():
        if key.lower() == "chatgpt-account-id" and value is not None:
            return string_value(value, key, max_length=MAX_ID_LENGTH, non_empty=True)
    return None


def _check_penalty(value: object, param: str) -> None:
    opt_number({param: value}, param, -2, 2)


def _check_stop(value: object, param: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_type(param, "one of a string or array of strings", value)


#: Accepted-but-ignored fields and their type checks.
_IGNORED_CHECKS: Mapping[str, Check] = {
    "stop": _check_stop,
    "presence_penalty": _check_penalty,
    "frequency_penalty": _check_penalty,
    "logit_bias": check_kind(dict),
    "logprobs": check_kind(bool),
    "top_logprobs": check_kind(int),
    "seed": check_kind(int),
    "tools": check_kind(list),
    "tool_choice": check_kind(str, dict),
    "parallel_tool_calls": check_kind(bool),
    "functions": check_kind(list),
    "function_call": check_kind(str, dict),
    "response_format": check_kind(dict),
    "metadata": check_kind(dict),
    "store": check_kind(bool),
    "service_tier": check_kind(str),
    "modalities": check_kind(list),
    "audio": check_kind(dict),
    "prediction": check_kind(dict),
    "web_search_options": check_kind(dict),
    "verbosity": check_kind(str),
    "prompt_cache_key": check_kind(str),
    "safety_identifier": check_kind(str),
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
