"""Request parsing: OpenAI's validation of chat-completions bodies (translator/request/)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errors import Chat2ApiError, InvalidRequest, PayloadTooLarge
from tests.support.chat_bodies import DROP, TABLE, USER, body, msg, parse
from translator.backend_body import build_conversation_body
from translator.models import resolve_model
from translator.request import (
    ChatRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    TextPart,
    ToolCall,
    parse_chat_request,
)
from translator.usage import count_prompt_tokens

# --- validation errors ----------------------------------------------------------------------

JSON_ERROR = "We could not parse the JSON body of your request."

ERROR_CASES: list[tuple[str, bytes, int, str | None, str]] = [
    ("not json", b"{nope", 400, None, JSON_ERROR),
    ("truncated", b'{"model": "gpt-4o"', 400, None, JSON_ERROR),
    ("empty body", b"", 400, None, JSON_ERROR),
    ("invalid utf-8", b'{"model": "\xff\xfe"}', 400, None, "not valid UTF-8"),
    ("NaN", body()[:-1] + b', "temperature": NaN}', 400, None, JSON_ERROR),
    ("Infinity", body()[:-1] + b', "top_p": Infinity}', 400, None, JSON_ERROR),
    ("huge int", body()[:-1] + b', "seed": ' + b"9" * 5000 + b"}", 400, None, JSON_ERROR),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, None, "nests deeper than 256"),
    ("deep unbalanced", b'{"a":' * 100_000, 400, None, "nests deeper than 256"),
    (
        "array body",
        b"[]",
        400,
        None,
        "Invalid type for request body: expected an object, but got an array instead.",
    ),
    ("string body", b'"x"', 400, None, "expected an object, but got a string instead."),
    ("no model", body(model=DROP), 400, "model", "'model' is a required property"),
    ("null model", body(model=None), 400, "model", "'model' is a required property"),
    (
        "int model",
        body(model=4),
        400,
        "model",
        "Invalid type for 'model': expected a string, but got an integer instead.",
    ),
    ("empty model", body(model=""), 400, "model", "Invalid 'model': empty string."),
    ("long model", body(model="x" * 300), 400, "model", "Invalid 'model': string too long."),
    ("no messages", body(messages=DROP), 400, "messages", "'messages' is a required property"),
    (
        "messages object",
        body(messages={"role": "user"}),
        400,
        "messages",
        "Invalid type for 'messages': expected an array, but got an object instead.",
    ),
    (
        "empty messages",
        body(messages=[]),
        400,
        "messages",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
    ),
    (
        "message not object",
        body(messages=["hi"]),
        400,
        "messages[0]",
        "Invalid type for 'messages[0]': expected an object, but got a string instead.",
    ),
    (
        "no role",
        body(messages=[USER, {"content": "x"}]),
        400,
        "messages[1].role",
        "Missing required parameter: 'messages[1].role'.",
    ),
    (
        "bad role",
        msg(role="bot", content="x"),
        400,
        "messages[0].role",
        "Invalid value: 'bot'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'.",
    ),
    (
        "role not string",
        msg(role=1, content="x"),
        400,
        "messages[0].role",
        "Invalid type for 'messages[0].role': expected a string, but got an integer instead.",
    ),
    (
        "no content",
        msg(role="user"),
        400,
        "messages[0].content",
        "Missing required parameter: 'messages[0].content'.",
    ),
    (
        "null content",
        msg(role="system", content=None),
        400,
        "messages[0].content",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got null instead.",
    ),
    (
        "assistant null content without tool calls",
        msg(role="assistant", content=None),
        400,
        "messages[0].content",
        "Invalid type for 'messages[0].content'",
    ),
    (
        "content int",
        msg(role="user", content=5),
        400,
        "messages[0].content",
        "expected one of a string or array of objects, but got an integer instead.",
    ),
    (
        "content object",
        msg(role="user", content={"type": "text"}),
        400,
        "messages[0].content",
        "but got an object instead.",
    ),
    (
        "content empty list",
        msg(role="user", content=[]),
        400,
        "messages[0].content",
        "Invalid 'messages[0].content': empty array.",
    ),
    (
        "part not object",
        msg(role="user", content=["hi"]),
        400,
        "messages[0].content[0]",
        "Invalid type for 'messages[0].content[0]': expected an object, but got a string",
    ),
    (
        "part without type",
        msg(role="user", content=[{"text": "hi"}]),
        400,
        "messages[0].content[0].type",
        "Missing required parameter: 'messages[0].content[0].type'.",
    ),
    (
        "unknown part type",
        msg(role="user", content=[{"type": "text", "text": "a"}, {"type": "video", "v": 1}]),
        400,
        "messages[0].content[1].type",
        "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', "
        "and 'file'.",
    ),
    (
        "image in system message",
        msg(role="system", content=[{"type": "image_url", "image_url": {"url": "https://x"}}]),
        400,
        "messages[0].content[0].type",
        "Invalid value: 'image_url'. Supported values are: 'text'.",
    ),
    (
        "refusal in user message",
        msg(role="user", content=[{"type": "refusal", "refusal": "no"}]),
        400,
        "messages[0].content[0].type",
        "Invalid value: 'refusal'.",
    ),
    (
        "text part without text",
        msg(role="user", content=[{"type": "text"}]),
        400,
        "messages[0].content[0].text",
        "Missing required parameter: 'messages[0].content[0].text'.",
    ),
    (
        "text part int",
        msg(role="user", content=[{"type": "text", "text": 1}]),
        400,
        "messages[0].content[0].text",
        "Invalid type for 'messages[0].content[0].text': expected a string",
    ),
    (
        "image_url string",
        msg(role="user", content=[{"type": "image_url", "image_url": "https://x"}]),
        400,
        "messages[0].content[0].image_url",
        "Invalid type for 'messages[0].content[0].image_url': expected an object",
    ),
    (
        "image without url",
        msg(role="user", content=[{"type": "image_url", "image_url": {}}]),
        400,
        "messages[0].content[0].image_url.url",
        "Missing required parameter: 'messages[0].content[0].image_url.url'.",
    ),
    (
        "image bad detail",
        msg(
            role="user",
            content=[{"type": "image_url", "image_url": {"url": "https://x", "detail": "max"}}],
        ),
        400,
        "messages[0].content[0].image_url.detail",
        "Invalid value: 'max'. Supported values are: 'auto', 'low', and 'high'.",
    ),
    (
        "file without data or id",
        msg(role="user", content=[{"type": "file", "file": {"filename": "a.pdf"}}]),
        400,
        "messages[0].content[0].file",
        "one of 'file_data' or 'file_id' is required",
    ),
    (
        "audio bad format",
        msg(
            role="user",
            content=[{"type": "input_audio", "input_audio": {"data": "AA", "format": "ogg"}}],
        ),
        400,
        "messages[0].content[0].input_audio.format",
        "Invalid value: 'ogg'. Supported values are: 'wav' and 'mp3'.",
    ),
    (
        "tool without tool_call_id",
        msg(role="tool", content="42"),
        400,
        "messages[0].tool_call_id",
        "Missing required parameter: 'messages[0].tool_call_id'.",
    ),
    (
        "function without name",
        msg(role="function", content="42"),
        400,
        "messages[0].name",
        "Missing required parameter: 'messages[0].name'.",
    ),
    (
        "name not string",
        msg(role="user", content="x", name=3),
        400,
        "messages[0].name",
        "Invalid type for 'messages[0].name': expected a string, but got an integer instead.",
    ),
    (
        "tool_calls not list",
        msg(role="assistant", content=None, tool_calls={}),
        400,
        "messages[0].tool_calls",
        "Invalid type for 'messages[0].tool_calls': expected an array",
    ),
    (
        "tool call without function",
        msg(role="assistant", content=None, tool_calls=[{"id": "c", "type": "function"}]),
        400,
        "messages[0].tool_calls[0].function",
        "Missing required parameter: 'messages[0].tool_calls[0].function'.",
    ),
    (
        "n = 2",
        body(n=2),
        400,
        "n",
        "Invalid 'n': 2 completions were requested, but this server can only return one",
    ),
    (
        "n = 0",
        body(n=0),
        400,
        "n",
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
    ),
    (
        "n string",
        body(n="1"),
        400,
        "n",
        "Invalid type for 'n': expected an integer, but got a string instead.",
    ),
    (
        "stream string",
        body(stream="true"),
        400,
        "stream",
        "Invalid type for 'stream': expected a boolean, but got a string instead.",
    ),
    (
        "stream int",
        body(stream=1),
        400,
        "stream",
        "Invalid type for 'stream': expected a boolean, but got an integer instead.",
    ),
    (
        "stream_options not object",
        body(stream=True, stream_options=True),
        400,
        "stream_options",
        "Invalid type for 'stream_options': expected an object, but got a boolean instead.",
    ),
    (
        "stream_options without stream",
        body(stream_options={"include_usage": True}),
        400,
        "stream_options",
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    ),
    (
        "include_usage string",
        body(stream=True, stream_options={"include_usage": "yes"}),
        400,
        "stream_options.include_usage",
        "Invalid type for 'stream_options.include_usage': expected a boolean",
    ),
    (
        "max_tokens negative",
        body(max_tokens=-1),
        400,
        "max_tokens",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
        "but got -1 instead.",
    ),
    (
        "max_tokens decimal",
        body(max_tokens=1.5),
        400,
        "max_tokens",
        "Invalid type for 'max_tokens': expected an integer, but got a decimal instead.",
    ),
    (
        "max_tokens bool",
        body(max_tokens=True),
        400,
        "max_tokens",
        "expected an integer, but got a boolean instead.",
    ),
    (
        "max_completion_tokens zero",
        body(max_completion_tokens=0),
        400,
        "max_completion_tokens",
        "Invalid 'max_completion_tokens': integer below minimum value.",
    ),
    (
        "temperature string",
        body(temperature="hot"),
        400,
        "temperature",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
    ),
    (
        "temperature too high",
        body(temperature=2.5),
        400,
        "temperature",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
        "but got 2.5 instead.",
    ),
    (
        "top_p negative",
        body(top_p=-0.1),
        400,
        "top_p",
        "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, "
        "but got -0.1 instead.",
    ),
    (
        "huge exponent",
        body()[:-1] + b', "temperature": 1e400}',
        400,
        "temperature",
        "decimal above maximum value",
    ),
    (
        "reasoning_effort",
        body(reasoning_effort="extreme"),
        400,
        "reasoning_effort",
        "Invalid value: 'extreme'. Supported values are: 'none', 'minimal', 'low', 'medium', "
        "'high', and 'xhigh'.",
    ),
    (
        "history_disabled string",
        body(history_disabled="yes"),
        400,
        "history_disabled",
        "Invalid type for 'history_disabled': expected a boolean",
    ),
    (
        "conversation_id int",
        body(conversation_id=5),
        400,
        "conversation_id",
        "Invalid type for 'conversation_id': expected a string",
    ),
    (
        "account id int",
        body(**{"Chatgpt-Account-Id": 5}),
        400,
        "Chatgpt-Account-Id",
        "Invalid type for 'Chatgpt-Account-Id': expected a string",
    ),
    (
        "stop int",
        body(stop=5),
        400,
        "stop",
        "Invalid type for 'stop': expected one of a string or array of strings",
    ),
    (
        "tools object",
        body(tools={}),
        400,
        "tools",
        "Invalid type for 'tools': expected an array, but got an object instead.",
    ),
    (
        "presence_penalty",
        body(presence_penalty=3),
        400,
        "presence_penalty",
        "Invalid 'presence_penalty': decimal above maximum value.",
    ),
    (
        "seed decimal",
        body(seed=1.5),
        400,
        "seed",
        "Invalid type for 'seed': expected an integer, but got a decimal instead.",
    ),
    (
        "tool_choice int",
        body(tool_choice=1),
        400,
        "tool_choice",
        "expected a string or an object, but got an integer instead.",
    ),
]


@pytest.mark.parametrize(
    ("raw", "status", "param", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_validation_errors(raw: bytes, status: int, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(raw)
    error = info.value
    assert (error.status, error.param) == (status, param)
    assert message in error.message
    envelope = error.to_dict()["error"]
    assert envelope["type"] == "invalid_request_error" and envelope["param"] == param


@pytest.mark.parametrize(("depth", "ok"), [(250, True), (257, False), (5000, False)])
def test_nesting_limit(depth: int, ok: bool) -> None:
    nested = "[" * depth + "]" * depth
    raw = body()[:-1] + f', "metadata_x": {nested}}}'.encode()
    if ok:
        assert parse(raw).ignored == ("metadata_x",)
    else:
        with pytest.raises(InvalidRequest, match="nests deeper than 256 levels"):
            parse(raw)


def test_brackets_inside_strings_do_not_count() -> None:
    text = "[{" * 10_000 + '\\"' + "[" * 300
    assert parse(body(messages=[{"role": "user", "content": text}])).messages[0].text == text


def test_body_too_large() -> None:
    raw = body(messages=[{"role": "user", "content": "x" * 2000}])
    with pytest.raises(PayloadTooLarge) as info:
        parse_chat_request(raw, max_body_bytes=1000)
    assert info.value.status == 413
    assert parse_chat_request(raw, max_body_bytes=len(raw)).messages[0].text == "x" * 2000


# --- accepted requests ----------------------------------------------------------------------


def test_minimal_request_defaults() -> None:
    req = parse(body())
    assert req.model == "gpt-4o"
    assert req.messages[0].role == "user" and req.messages[0].content == (TextPart(text="hi"),)
    assert (req.stream, req.include_usage, req.max_tokens, req.reasoning_effort) == (
        False,
        False,
        None,
        None,
    )
    assert (req.conversation_id, req.parent_message_id, req.history_disabled) == (None,) * 3
    assert req.account_id is None and req.ignored == ()


def test_all_fields() -> None:
    req = parse(
        body(
            stream=True,
            stream_options={"include_usage": True},
            n=1,
            max_tokens=10,
            max_completion_tokens=20,
            temperature=0.5,
            top_p=1,
            reasoning_effort="high",
            user="u1",
            stop=["\n"],
            tools=[],
            seed=3,
            response_format={"type": "json_object"},
            logit_bias={"1": 2},
            vendor_extension={"x": 1},
            conversation_id="c-1",
            parent_message_id="p-1",
            history_disabled=False,
            **{"chatgpt-account-id": "acc-1"},
        )
    )
    assert req.stream and req.include_usage
    assert req.max_tokens == 20  # max_completion_tokens wins
    assert (req.temperature, req.top_p, req.reasoning_effort, req.user) == (0.5, 1.0, "high", "u1")
    assert (req.conversation_id, req.parent_message_id, req.history_disabled) == (
        "c-1",
        "p-1",
        False,
    )
    assert req.account_id == "acc-1"
    # response_format, stop and tools are honoured now (translator/options.py).
    assert req.ignored == (
        "logit_bias",
        "seed",
        "temperature",
        "top_p",
        "user",
        "vendor_extension",
    )


@pytest.mark.parametrize("value", [None, {}, {"include_usage": False}])
def test_stream_options_without_usage(value: Any) -> None:
    assert parse(body(stream=True, stream_options=value)).include_usage is False


def test_nulls_are_absent() -> None:
    req = parse(body(stream=None, n=None, max_tokens=None, temperature=None, stop=None))
    assert req.stream is False and req.max_tokens is None and req.ignored == ()


def test_messages_normalised() -> None:
    req = parse(
        body(
            messages=[
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "name": "ann",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,AA", "detail": "low"},
                        },
                        {"type": "file", "file": {"file_data": "data:a;base64,AA"}},
                        {"type": "file", "file": {"file_id": "file-abc", "filename": "a.pdf"}},
                        {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "no"}],
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "function", "name": "g", "content": None},
                {"role": "assistant", "content": None, "function_call": {"name": "h"}},
            ]
        )
    )
    dev, user, assistant, tool, function, legacy = req.messages
    assert dev.role == "developer" and dev.text == "be brief"
    assert user.name == "ann"
    assert user.content == (
        TextPart(text="look"),
        ImagePart(url="https://x/a.png"),
        ImagePart(url="data:image/png;base64,AA", detail="low"),
        FilePart(file_data="data:a;base64,AA"),
        FilePart(file_id="file-abc", filename="a.pdf"),
        InputAudioPart(data="AA", format="wav"),
    )
    assert assistant.text == "no"
    assert assistant.tool_calls == (ToolCall(id="c1", name="f", arguments='{"a":1}'),)
    assert tool.tool_call_id == "c1" and tool.text == "42"
    assert function.content == () and function.name == "g"
    assert legacy.tool_calls == (ToolCall(id=None, name="h", arguments=""),)


def test_lone_surrogates_are_replaced() -> None:
    req = parse(b'{"model":"gpt-4o","messages":[{"role":"user","content":"a\\ud800b"}]}')
    assert req.messages[0].text == "a\ufffdb"
    req.messages[0].text.encode("utf-8")  # must be encodable for the upstream body


def test_utf8_and_escapes() -> None:
    raw = json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "zażółć \u2028 😀"}]},
        ensure_ascii=False,
    ).encode()
    assert parse(raw).messages[0].text == "zażółć \u2028 😀"


# --- hypothesis: anything in, only our errors out -------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five: random junk everywhere would stop at the first field."""
    return st.integers(0, 4).flatmap(lambda k: bad if k == 4 else good)


parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "file", "input_audio", "refusal", "y"])},
        optional={
            "text": st.text(max_size=10) | json_values,
            "image_url": st.fixed_dictionaries({"url": st.text(max_size=10)}) | json_values,
            "file": st.fixed_dictionaries({"file_data": st.text(max_size=10)}) | json_values,
            "input_audio": json_values,
        },
    ),
    max_size=3,
)
message_like = st.fixed_dictionaries(
    {
        "role": mostly(
            st.sampled_from(["user", "system", "developer", "assistant", "tool", "function"]),
            json_values,
        ),
        "content": mostly(st.text(max_size=20) | parts, json_values),
    },
    optional={
        "name": mostly(st.text(min_size=1, max_size=5), json_values),
        "tool_call_id": mostly(st.text(min_size=1, max_size=5), json_values),
        "tool_calls": json_values,
    },
)
OPTIONAL_FIELDS = [
    "stream",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "reasoning_effort",
    "stop",
    "tools",
    "conversation_id",
    "history_disabled",
    "Chatgpt-Account-Id",
    "user",
]
plausible = mostly(st.none() | st.booleans() | st.integers(-1, 3) | st.floats(-1, 3), json_values)
bodies = st.fixed_dictionaries(
    {
        "model": mostly(st.just("gpt-4o"), json_values),
        "messages": mostly(st.lists(message_like, min_size=1, max_size=3), json_values),
    },
    optional={field: plausible for field in OPTIONAL_FIELDS},
)


def check_parse(raw: bytes) -> None:
    try:
        result = parse_chat_request(raw, max_body_bytes=1 << 16)
    except Chat2ApiError as error:
        assert 400 <= error.status < 500
        json.dumps(error.to_dict())
    else:
        assert isinstance(result, ChatRequest)
        built = build_conversation_body(  # any request we accept can be sent upstream
            result,
            model=resolve_model(TABLE, result.model),
            history_disabled=True,
            timezone="UTC",
            timezone_offset_min=0,
            rng=random.Random(7),
        )
        json.dumps(built, ensure_ascii=False).encode("utf-8")
        assert count_prompt_tokens(result.messages, "gpt-4o") >= 3 + 4 * len(result.messages)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_random_bodies(data: dict[str, Any]) -> None:
    check_parse(json.dumps(data).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(raw: bytes) -> None:
    check_parse(raw)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=50_000), st.sampled_from([b"[", b'{"a":', b'{"m":[']))
def test_deep_nesting(depth: int, opener: bytes) -> None:
    try:
        parse_chat_request(opener * depth, max_body_bytes=1 << 22)
    except Chat2ApiError as error:
        assert error.status == 400


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=50), st.integers(min_value=0, max_value=60))
def test_invalid_bytes_spliced_into_valid_body(junk: bytes, at: int) -> None:
    raw = body()
    check_parse(raw[:at] + junk + raw[at:])


def test_huge_string_within_limit() -> None:
    text = "a" * 3_000_000
    req = parse_chat_request(
        body(messages=[{"role": "user", "content": text}]), max_body_bytes=1 << 23
    )
    assert len(req.messages[0].text) == 3_000_000
