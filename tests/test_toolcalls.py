"""Tool emulation, unit level: options, the streaming call parser, the prompt, the verdicts."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errors import InvalidRequest
from service.emulation import Turn, judge
from translator.options import ResponseFormat, ToolChoice, ToolSpec, parse_options
from translator.request import parse_chat_request
from translator.toolcalls.parser import CallError, CallParser, ParsedCall
from translator.toolcalls.protocol import emulate, instructions
from translator.toolcalls.validate import Invalid, structured_answer

WEATHER = ToolSpec(
    name="get_weather",
    description="Weather now",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
NOW = ToolSpec(name="now")
TOOLS = {t.name: t for t in (WEATHER, NOW)}

FOLLOWED = (
    "Let me check.\n\n```xml\n"
    '<chat2api:call name="get_weather">\n{"city": "Paris", "days": 2}\n</chat2api:call>\n'
    '<chat2api:call name="now"/>\n```\n'
)


def _feed(text: str, cuts: list[int]) -> list[object]:
    parser = CallParser(TOOLS)
    out: list[object] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += parser.feed(text[last:cut])
        last = cut
    out += parser.feed(text[last:])
    return out + parser.finish()


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(FOLLOWED)), max_size=40))
def test_calls_found_however_the_text_is_cut(cuts: list[int]) -> None:
    out = _feed(FOLLOWED, cuts)
    assert "".join(x for x in out if isinstance(x, str)) == "Let me check."
    calls = [x for x in out if isinstance(x, ParsedCall)]
    assert [c.name for c in calls] == ["get_weather", "now"]
    assert calls[0].arguments == '{"city": "Paris", "days": 2}'
    assert "".join(calls[0].pieces) == calls[0].arguments
    assert calls[1].arguments == "{}"


def test_text_passes_at_once_and_only_a_marker_prefix_is_held() -> None:
    parser = CallParser(TOOLS)
    assert parser.feed("Hello wor") == ["Hello wor"]
    assert parser.feed("ld <chat2") == ["ld"]  # " <chat2" could still open a call
    assert parser.feed("0 years") == [" <chat20 years"]
    assert parser.finish() == []


def test_argument_pieces_follow_the_deltas() -> None:
    parser = CallParser(TOOLS)
    out = parser.feed('<chat2api:call name="get_weather">{"city":')
    out += parser.feed(' "Oslo"')
    out += parser.feed("}</chat2api:call>")
    (call,) = out
    assert isinstance(call, ParsedCall)
    assert call.pieces == ('{"city":', ' "Oslo"', "}")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('<chat2api:call name="nope">{}</chat2api:call>', "tool_call_unknown_tool"),
        ('<chat2api:call name="get_weather">{"city":</chat2api:call>', "tool_call_malformed"),
        ('<chat2api:call name="get_weather">[1]</chat2api:call>', "tool_call_malformed"),
        (
            '<chat2api:call name="get_weather">{"town": "x"}</chat2api:call>',
            "tool_call_invalid_arguments",
        ),
        (
            '<chat2api:call name="get_weather">{"city": 3}</chat2api:call>',
            "tool_call_invalid_arguments",
        ),
        ("<chat2api:call>{}</chat2api:call>", "tool_call_malformed"),
        ('<chat2api:call name="get_weather"', "tool_call_malformed"),
    ],
)
def test_invalid_calls_are_errors_never_text(text: str, code: str) -> None:
    out = _feed(text, [])
    errors = [x for x in out if isinstance(x, CallError)]
    assert [e.code for e in errors] == [code]
    assert not any(isinstance(x, str) and "chat2api" in x for x in out)


def test_tolerated_variants() -> None:
    wrapped = (
        '<chat2api:call name="get_weather">{"name": "get_weather", "arguments": {"city": "A"}}'
    )
    fenced = '<chat2api:call name=get_weather>\n```json\n{"city": "B"}\n```\n</chat2api:call>'
    for text, city in ((wrapped, "A"), (fenced, "B")):  # the first one is never closed
        (call,) = _feed(text, [7, 30])
        assert isinstance(call, ParsedCall)
        assert json.loads(call.arguments) == {"city": city}


def test_lookalike_markup_is_text() -> None:
    out = _feed("a < b and <chat2api:callback> x", [12])
    assert "".join(x for x in out if isinstance(x, str)) == "a < b and <chat2api:callback> x"


def test_code_fences_without_calls_survive() -> None:
    text = "Code:\n```python\nprint(1)\n```\nDone."
    for seed in range(50):
        rng = random.Random(seed)
        cuts = [rng.randrange(len(text)) for _ in range(6)]
        out = _feed(text, cuts)
        assert "".join(x for x in out if isinstance(x, str)) == text


# ---------------------------------------------------------------- options


def _options(**body: object) -> object:
    return parse_options(body)


def test_options_parse_tools_choice_and_format() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    opts = parse_options(
        {
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "stop": ["\n", "END"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
        }
    )
    assert opts.tool_choice == ToolChoice(mode="named", name="f")
    assert opts.call_required and not opts.parallel_tool_calls
    assert opts.stop == ("\n", "END")
    assert opts.response_format == ResponseFormat(
        kind="json_schema", name="x", schema={"type": "object"}, strict=True
    )


def test_legacy_functions() -> None:
    opts = parse_options({"functions": [{"name": "f"}], "function_call": {"name": "f"}})
    assert opts.legacy_functions and opts.tool_choice.mode == "named"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}]},
            "tools[0].function.parameters",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
    ],
)
def test_refused_fields_name_their_param(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_options(body)
    assert info.value.param == param


def test_chat_request_carries_options_and_no_longer_ignores_them() -> None:
    raw = json.dumps(
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "stop": "x",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "temperature": 0.2,
        }
    ).encode()
    req = parse_chat_request(raw, max_body_bytes=1 << 20)
    assert req.options.stop == ("x",) and req.options.tools[0].name == "f"
    assert req.ignored == ("temperature",)


# ---------------------------------------------------------------- prompt


def _request(**extra: object) -> object:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "22 C, sunny"},
        ],
        **extra,
    }
    return parse_chat_request(json.dumps(body).encode(), max_body_bytes=1 << 20)


def test_prompt_has_tools_rules_choice_and_readable_history() -> None:
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}},
    }
    req = _request(tools=[tool], tool_choice="required")
    out = emulate(req)  # type: ignore[arg-type]
    head = out.messages[0]
    assert head.role == "system"
    assert "<chat2api:tools>" in head.text and '"get_weather"' in head.text
    assert "must call at least one tool" in head.text and "/mnt/data" in head.text
    assert out.messages[1].text == "Be brief."
    assert '<chat2api:call name="get_weather">\n{"city":"Paris"}' in out.messages[3].text
    result = out.messages[4]
    assert result.role == "user"
    assert result.text == (
        '<chat2api:result name="get_weather" call_id="call_1">\n22 C, sunny\n</chat2api:result>'
    )


def test_nothing_injected_without_tools_or_format() -> None:
    req = _request()
    assert emulate(req) is req  # type: ignore[arg-type]


def test_choice_none_and_format_instructions() -> None:
    opts = parse_options(
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "none",
            "response_format": {"type": "json_object"},
        }
    )
    text = instructions(opts)
    assert "Tool calling is off" in text and "<chat2api:tools>" not in text
    assert "one JSON object" in text


# ---------------------------------------------------------------- verdicts and validation


def _opts(**body: object) -> object:
    base = {"tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    return parse_options({**base, **body})


def test_required_choice_rejects_prose_and_spots_the_sandbox() -> None:
    opts = _opts(tool_choice="required")
    prose = judge(Turn(raw=["It is sunny."], content=["It is sunny."]), opts)  # type: ignore[arg-type]
    assert prose is not None and prose.code == "tool_call_missing" and prose.kind == "missing_call"
    sandbox = judge(Turn(raw=["I looked in /mnt/data: empty."]), opts)  # type: ignore[arg-type]
    assert sandbox is not None and sandbox.kind == "sandbox"


def test_auto_choice_accepts_prose() -> None:
    assert judge(Turn(raw=["It is sunny."], content=["It is sunny."]), _opts()) is None  # type: ignore[arg-type]


def test_named_choice_rejects_another_tool() -> None:
    opts = parse_options(
        {
            "tools": [
                {"type": "function", "function": {"name": "a"}},
                {"type": "function", "function": {"name": "b"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "a"}},
        }
    )
    turn = Turn(calls=[ParsedCall(name="b", arguments="{}", pieces=("{}",))])
    verdict = judge(turn, opts)
    assert verdict is not None and verdict.code == "tool_call_wrong_tool"


def test_structured_answers() -> None:
    fmt = ResponseFormat(
        kind="json_schema",
        name="p",
        schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    assert structured_answer(fmt, '```json\n{"n": 1}\n```') == '{"n": 1}'
    for text, code in (
        ("Sure! here", "structured_output_invalid_json"),
        ('{"n": "one"}', "structured_output_schema_mismatch"),
        ("", "structured_output_missing"),
    ):
        with pytest.raises(Invalid) as info:
            structured_answer(fmt, text)
        assert info.value.code == code
    with pytest.raises(Invalid):
        structured_answer(ResponseFormat(kind="json_object"), "[1, 2]")
