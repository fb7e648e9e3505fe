"""Tools, structured output, stop and max_tokens on the web conversation, end to end.

Real clients (the openai SDK and LangChain from .venv-clients, curl) through a running
mitmdump, both listeners, answered by the emulator's tool model (tests/fakechatgpt/toolmodel.py):
it obeys chat2api's prompt protocol by default, and plans make it break the protocol.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import (
    Emulator,
    next_plan,
    received,
)
from tests.support.clients import proxy_env, reverse_env, run_client
from tests.support.mitm import Mitm

MODES = ["proxy", "reverse"]
DIALECT = "2026"

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time now."}}


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": DIALECT}


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"dialect": DIALECT, "env": {"CODEX_BACKEND": "never"}}


def env_for(mitm: Mitm, mode: str, key: str) -> dict[str, str]:
    return proxy_env(mitm, key) if mode == "proxy" else reverse_env(mitm, key)


def conversation_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    return [
        json.loads(r["body"]) for r in received(emulator.url) if r["path"].endswith("/conversation")
    ]


# The raw stream as the SDK sees it: every chunk, so the shapes can be checked exactly.
RAW = r"""
import os, openai
spec = json.loads(os.environ["C2A_SPEC"])
client = openai.OpenAI(max_retries=0, timeout=60)
try:
    if spec.pop("stream", False):
        chunks = [c.model_dump(exclude_unset=True) for c in
                  client.chat.completions.create(stream=True, **spec)]
        emit({"chunks": chunks})
    else:
        emit({"whole": client.chat.completions.create(**spec).model_dump()})
except openai.APIError as e:
    body = getattr(e, "body", None)
    emit({"error": describe_error(e), "code": getattr(e, "code", None), "body": body})
"""


def raw(env: dict[str, str], **spec: Any) -> dict[str, Any]:
    (result,) = run_client(RAW, {**env, "C2A_SPEC": json.dumps(spec)}, timeout=90)
    assert isinstance(result, dict)
    return result


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def tool_deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        tc
        for c in chunks
        for ch in c.get("choices", [])
        for tc in (ch.get("delta", {}).get("tool_calls") or [])
    ]


def finishes(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        ch["finish_reason"]
        for c in chunks
        for ch in c.get("choices", [])
        if ch.get("finish_reason")
    ]


# -- tool calls ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_streamed_call_arrives_as_openai_streams_it(
    emulator: Emulator, mitm: Mitm, token: str, mode: str
) -> None:
    result = raw(
        env_for(mitm, mode, token),
        model="gpt-4o",
        messages=user("Weather in Paris for 2 days?"),
        tools=[WEATHER],
        stream=True,
    )
    chunks = result["chunks"]
    deltas = tool_deltas(chunks)
    first, rest = deltas[0], deltas[1:]
    assert first["index"] == 0 and first["type"] == "function"
    assert first["id"].startswith("call_")
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) >= 2, "arguments arrive in pieces"
    assert all(set(d) == {"index", "function"} and d["index"] == 0 for d in rest)
    arguments = "".join(d["function"]["arguments"] for d in rest)
    assert json.loads(arguments) == {"city": "example", "days": 2}
    assert finishes(chunks) == ["tool_calls"]
    text = "".join(
        ch["delta"].get("content") or "" for c in chunks for ch in c["choices"] if ch.get("delta")
    )
    assert text == "I will use get_weather for this."
    (body,) = conversation_bodies(emulator)
    system = body["messages"][0]
    assert system["author"]["role"] == "system"
    assert "<chat2api:tools>" in system["content"]["parts"][0]


@pytest.mark.parametrize("mode", MODES)
def test_whole_answer_has_message_tool_calls(mitm: Mitm, token: str, mode: str) -> None:
    result = raw(
        env_for(mitm, mode, token),
        model="gpt-4o",
        messages=user("Weather in Oslo for 3 days?"),
        tools=[WEATHER, CLOCK],
        tool_choice="required",
    )
    choice = result["whole"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "example", "days": 3}


def test_several_calls_are_indexed(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, tool_mode="several")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather and time, 1 day"),
        tools=[WEATHER, CLOCK],
        stream=True,
    )
    heads = [d for d in tool_deltas(result["chunks"]) if "id" in d]
    assert [(h["index"], h["function"]["name"]) for h in heads] == [
        (0, "get_weather"),
        (1, "clock"),
    ]
    assert len({h["id"] for h in heads}) == 2
    assert finishes(result["chunks"]) == ["tool_calls"]


def test_two_turn_tool_loop_with_the_sdk(emulator: Emulator, mitm: Mitm, token: str) -> None:
    script = """
    import openai
    client = openai.OpenAI(max_retries=0)
    tools = json.loads(%r)
    messages = [{"role": "user", "content": "Weather in Rome for 4 days?"}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"})
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    emit({"name": call.function.name, "final": second.choices[0].message.content,
          "reason": second.choices[0].finish_reason})
    """ % json.dumps([WEATHER])
    (result,) = run_client(script, reverse_env(mitm, token))
    assert result["name"] == "get_weather"
    assert result["reason"] == "stop"
    assert "Sunny, 24 C" in result["final"]
    second = conversation_bodies(emulator)[1]
    texts = [m["content"]["parts"][0] for m in second["messages"]]
    assert texts[-2].startswith("I will use get_weather for this.\n\n<chat2api:call name=")
    assert texts[-1].startswith('<chat2api:result name="get_weather" call_id="call_')


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_required_call_gets_one_correction(
    emulator: Emulator, mitm: Mitm, token: str, stream: bool
) -> None:
    next_plan(emulator.url, tool_mode="prose")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Lima for 5 days?"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=stream,
    )
    if stream:
        assert finishes(result["chunks"]) == ["tool_calls"]
        assert tool_deltas(result["chunks"])[0]["function"]["name"] == "get_weather"
    else:
        assert result["whole"]["choices"][0]["finish_reason"] == "tool_calls"
    first, second = conversation_bodies(emulator)
    last = second["messages"][-1]["content"]["parts"][0]
    assert "did not call a tool" in last and "get_weather" in last
    assert second["messages"][-2]["author"]["role"] == "assistant"


@pytest.mark.parametrize(
    ("tool_mode", "code"),
    [
        ("prose", "tool_call_missing"),
        ("sandbox", "tool_call_missing"),
        ("refusal", "tool_call_missing"),
        ("malformed", "tool_call_malformed"),
        ("unknown_tool", "tool_call_unknown_tool"),
        ("bad_arguments", "tool_call_invalid_arguments"),
    ],
)
def test_required_call_fails_honestly_after_the_retry(
    emulator: Emulator, mitm: Mitm, token: str, tool_mode: str, code: str
) -> None:
    next_plan(emulator.url, tool_mode=tool_mode, count=2)
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Kyiv for 1 day?"),
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
    )
    assert result["error"]["error_class"] == "InternalServerError", result
    assert result["error"]["status"] == 502
    assert result["code"] == code
    assert len(conversation_bodies(emulator)) == 2
    if tool_mode == "sandbox":
        note = conversation_bodies(emulator)[1]["messages"][-1]["content"]["parts"][0]
        assert "no Python sandbox" in note


def test_auto_choice_accepts_prose(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, tool_mode="prose")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("What is six times seven?"),
        tools=[WEATHER],
    )
    choice = result["whole"]["choices"][0]
    assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls")
    assert "42" in choice["message"]["content"]
    assert len(conversation_bodies(emulator)) == 1


def test_invalid_call_in_a_live_stream_is_an_error_not_text(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, tool_mode="malformed")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Bern for 1 day?"),
        tools=[WEATHER],
        stream=True,
    )
    assert result["error"]["error_class"] == "APIError", result
    assert "not valid JSON" in result["error"]["message"]


def test_invalid_call_in_a_whole_answer_is_corrected(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, tool_mode="unknown_tool")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Riga for 2 days?"),
        tools=[WEATHER],
    )
    (call,) = result["whole"]["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    note = conversation_bodies(emulator)[1]["messages"][-1]["content"]["parts"][0]
    assert "get_weather_v2" in note and "invalid tool call" in note


def test_fenced_calls_are_read(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, tool_mode="fenced")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Nice for 1 day?"),
        tools=[WEATHER],
        stream=True,
    )
    text = "".join(
        ch["delta"].get("content") or "" for c in result["chunks"] for ch in c["choices"]
    )
    assert "```" not in text and "chat2api" not in text
    assert finishes(result["chunks"]) == ["tool_calls"]


def test_legacy_functions(mitm: Mitm, token: str) -> None:
    fn = WEATHER["function"]
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Porto for 2 days?"),
        functions=[fn],
        function_call={"name": "get_weather"},
    )
    choice = result["whole"]["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    streamed = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Weather in Porto for 2 days?"),
        functions=[fn],
        stream=True,
    )
    calls = [
        ch["delta"]["function_call"]
        for c in streamed["chunks"]
        for ch in c["choices"]
        if ch.get("delta", {}).get("function_call")
    ]
    assert calls[0] == {"name": "get_weather", "arguments": ""}
    assert json.loads("".join(c["arguments"] for c in calls[1:])) == {"city": "example", "days": 2}
    assert finishes(streamed["chunks"]) == ["function_call"]


def test_no_tools_nothing_injected(emulator: Emulator, mitm: Mitm, token: str) -> None:
    result = raw(reverse_env(mitm, token), model="gpt-4o", messages=user("plain"))
    assert result["whole"]["choices"][0]["message"]["content"] == expected_answer("plain", "gpt-4o")
    (body,) = conversation_bodies(emulator)
    assert all("chat2api" not in json.dumps(m) for m in body["messages"])


# -- structured output ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sdk_parse_with_a_pydantic_model(
    emulator: Emulator, mitm: Mitm, token: str, mode: str
) -> None:
    script = """
    import openai
    from pydantic import BaseModel
    class Step(BaseModel):
        explanation: str
        output: int
    class Solution(BaseModel):
        steps: list[Step]
        final: int
    client = openai.OpenAI(max_retries=0)
    done = client.chat.completions.parse(model="gpt-4o", response_format=Solution,
        messages=[{"role": "user", "content": "Solve 8x + 7 = 23"}])
    emit({"parsed": done.choices[0].message.parsed.model_dump()})
    """
    (result,) = run_client(script, env_for(mitm, mode, token))
    assert result["parsed"] == {"steps": [{"explanation": "example", "output": 8}], "final": 7}


def test_structured_output_is_corrected_then_refused(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    }
    next_plan(emulator.url, tool_mode="bad_json")
    good = raw(
        reverse_env(mitm, token), model="gpt-4o", messages=user("A city"), response_format=fmt
    )
    assert json.loads(good["whole"]["choices"][0]["message"]["content"]) == {"name": "example"}
    next_plan(emulator.url, tool_mode="bad_json", count=2)
    bad = raw(
        reverse_env(mitm, token), model="gpt-4o", messages=user("A city"), response_format=fmt
    )
    assert bad["error"]["status"] == 502 and bad["code"] == "structured_output_invalid_json"


def test_json_object_streamed(mitm: Mitm, token: str) -> None:
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("Give me JSON"),
        response_format={"type": "json_object"},
        stream=True,
    )
    text = "".join(
        ch["delta"].get("content") or "" for c in result["chunks"] for ch in c["choices"]
    )
    assert isinstance(json.loads(text), dict)
    assert finishes(result["chunks"]) == ["stop"]


# -- LangChain -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_langchain_agent_loop_and_structured_output(mitm: Mitm, token: str, mode: str) -> None:
    script = """
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    @tool
    def multiply(a: int, b: int) -> int:
        "Multiply two integers."
        return a * b

    llm = ChatOpenAI(model="gpt-4o", max_retries=0)
    agent = llm.bind_tools([multiply])
    messages = [HumanMessage("What is 6 times 7?")]
    for _ in range(4):
        reply = agent.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            messages.append(ToolMessage(str(multiply.invoke(call["args"])),
                                        tool_call_id=call["id"]))
    streamed = [c for c in agent.stream("What is 2 times 9?")]
    chunk = streamed[0]
    for c in streamed[1:]:
        chunk = chunk + c

    class Person(BaseModel):
        name: str
        age: int

    structured = {}
    for method in ("json_schema", "function_calling", "json_mode"):
        bound = llm.with_structured_output(Person, method=method)
        prompt = ('Ann is 31. Reply in JSON like {"name": "Ann", "age": 31}.'
                  if method == "json_mode" else "Ann is 31")
        structured[method] = bound.invoke(prompt).model_dump()
    emit({"final": messages[-1].content, "turns": len(messages),
          "calls": messages[1].tool_calls, "streamed_calls": chunk.tool_calls,
          "structured": structured})
    """
    (result,) = run_client(script, env_for(mitm, mode, token), timeout=120)
    assert result["calls"][0]["name"] == "multiply"
    assert result["calls"][0]["args"] == {"a": 6, "b": 7}
    assert "42" in result["final"] and result["turns"] == 4
    assert result["streamed_calls"][0]["args"] == {"a": 2, "b": 9}
    for method in ("json_schema", "function_calling"):
        assert result["structured"][method] == {"name": "example", "age": 31}, method
    assert result["structured"]["json_mode"] == {"name": "Ann", "age": 31}


# -- stop, max_tokens, logprobs, models, conversation ids ---------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_max_tokens_cuts_the_answer(
    emulator: Emulator, mitm: Mitm, token: str, stream: bool
) -> None:
    spec: dict[str, Any] = dict(model="gpt-4o", messages=user("long one"), max_tokens=5)
    if stream:
        spec["stream_options"] = {"include_usage": True}
    result = raw(reverse_env(mitm, token), stream=stream, **spec)
    if stream:
        chunks = result["chunks"]
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        usage = chunks[-1]["usage"]
        assert finishes(chunks) == ["length"]
    else:
        text = result["whole"]["choices"][0]["message"]["content"]
        usage = result["whole"]["usage"]
        assert result["whole"]["choices"][0]["finish_reason"] == "length"
    assert usage["completion_tokens"] == 5
    assert expected_answer("long one", "gpt-4o").startswith(text) and text


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_stop_sequences(mitm: Mitm, token: str, stream: bool) -> None:
    full = expected_answer("stop here", "gpt-4o")
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("stop here"),
        stop=["\n", "never"],
        stream=stream,
    )
    if stream:
        text = "".join(
            ch["delta"].get("content") or "" for c in result["chunks"] for ch in c["choices"]
        )
        assert finishes(result["chunks"]) == ["stop"]
    else:
        text = result["whole"]["choices"][0]["message"]["content"]
    assert text == full.split("\n")[0]


@pytest.mark.parametrize("field", ["logprobs", "top_logprobs"])
def test_logprobs_refused(mitm: Mitm, token: str, field: str) -> None:
    extra: dict[str, Any] = {"logprobs": True} if field == "logprobs" else {"top_logprobs": 2}
    result = raw(reverse_env(mitm, token), model="gpt-4o", messages=user("x"), **extra)
    assert result["error"]["status"] == 400
    assert result["body"]["param"] == field


def test_unknown_model_names_the_model_that_answered(mitm: Mitm, token: str) -> None:
    result = raw(reverse_env(mitm, token), model="my-invented-model", messages=user("who?"))
    assert result["whole"]["model"] == "auto"
    assert "mapped to auto" in mitm.log()


def test_conversation_id_comes_back_and_continues(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    extra = {"history_disabled": False}
    first = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("one"),
        stream=True,
        extra_body=extra,
    )
    ids = {c.get("conversation_id") for c in first["chunks"]}
    (cid,) = ids
    assert cid
    second = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user("two"),
        extra_body={**extra, "conversation_id": cid, "parent_message_id": "p-1"},
    )
    assert second["whole"]["conversation_id"] == cid
    body = conversation_bodies(emulator)[1]
    assert body["conversation_id"] == cid and body["parent_message_id"] == "p-1"


def test_reasoning_effort_on_the_web(emulator: Emulator, mitm: Mitm, token: str) -> None:
    thinking = raw(
        reverse_env(mitm, token), model="o3", messages=user("think"), reasoning_effort="high"
    )
    assert "error" not in thinking, thinking
    plain = raw(
        reverse_env(mitm, token), model="gpt-4o", messages=user("quick"), reasoning_effort="low"
    )
    assert "error" not in plain, plain
    first, second = conversation_bodies(emulator)
    assert first["thinking_effort"] == "max"  # the 2026 dialect's own field
    assert "thinking_effort" not in second
    assert "reasoning_effort 'low' not applied: gpt-4o is not a thinking model" in mitm.log()
