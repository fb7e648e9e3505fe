"""Chat completions answered by the Codex backend, end to end: the openai SDK and LangChain
through both listeners, the emulator's Codex backend answering (tests/fakechatgpt/codex*.py).

With ``CODEX_BACKEND=auto`` a chat request with tools or a ``response_format`` goes to the
Codex backend; a web model name is answered by the Codex table's default model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import (
    Emulator,
    codex_plan,
    expected_codex_answer,
    expected_codex_summary,
    expected_codex_tool_answer,
    received,
)
from tests.support.clients import proxy_env, reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory
from tests.test_e2e_tools import RAW, WEATHER, finishes, tool_deltas, user

MODES = ["proxy", "reverse"]
ASK = 'Weather please. call get_weather({"city": "Paris", "days": 2})'


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"env": {"CODEX_BACKEND": "auto"}}


def env_for(mitm: Mitm, mode: str, key: str) -> dict[str, str]:
    return proxy_env(mitm, key) if mode == "proxy" else reverse_env(mitm, key)


def raw(env: dict[str, str], **spec: Any) -> dict[str, Any]:
    (result,) = run_client(RAW, {**env, "C2A_SPEC": json.dumps(spec)}, timeout=90)
    assert isinstance(result, dict)
    return result


def codex_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    return [
        json.loads(r["body"])
        for r in received(emulator.url)
        if r.get("path", "").startswith("/backend-api/codex/responses")
    ]


def text_of(chunks: list[dict[str, Any]], key: str = "content") -> str:
    return "".join(ch["delta"].get(key) or "" for c in chunks for ch in c.get("choices", []))


@pytest.mark.parametrize("mode", MODES)
def test_streamed_tool_calls_and_the_request_mapping(
    emulator: Emulator, mitm: Mitm, token: str, mode: str
) -> None:
    result = raw(
        env_for(mitm, mode, token),
        model="gpt-4o",
        messages=[{"role": "system", "content": "Be brief."}, *user(ASK)],
        tools=[WEATHER],
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = result["chunks"]
    assert {c["model"] for c in chunks} == {"gpt-5.5"}  # the Codex model that answered
    deltas = tool_deltas(chunks)
    assert deltas[0]["index"] == 0 and deltas[0]["id"].startswith("call_")
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(deltas) > 2
    args = "".join(d["function"]["arguments"] for d in deltas[1:])
    assert json.loads(args) == {"city": "Paris", "days": 2}
    assert finishes(chunks) == ["tool_calls"]
    reasoning = text_of(chunks, "reasoning_content")
    assert reasoning == "\n\n".join(expected_codex_summary(ASK, "gpt-5.5"))
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] >= 0
    (body,) = codex_bodies(emulator)
    assert body["model"] == "gpt-5.5" and body["instructions"] == "Be brief."
    assert body["tools"] == [{"type": "function", **WEATHER["function"], "strict": False}]
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["input"][0]["content"] == [{"type": "input_text", "text": ASK}]


@pytest.mark.parametrize("mode", MODES)
def test_tool_loop_with_message_tool_calls(
    emulator: Emulator, mitm: Mitm, token: str, mode: str
) -> None:
    script = """
    import openai
    client = openai.OpenAI(max_retries=0)
    tools = json.loads(%r)
    messages = [{"role": "user", "content": %r}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    msg = first.choices[0].message
    messages.append(msg.model_dump(exclude_none=True))
    for call in msg.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"})
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    calls = [c.model_dump() for c in msg.tool_calls]
    emit({"reason": first.choices[0].finish_reason, "calls": calls,
          "final": second.choices[0].message.content, "model": second.model,
          "reason2": second.choices[0].finish_reason})
    """ % (json.dumps([WEATHER]), ASK)
    (result,) = run_client(script, env_for(mitm, mode, token))
    assert result["reason"] == "tool_calls"
    assert result["calls"][0]["function"]["name"] == "get_weather"
    assert result["final"] == expected_codex_tool_answer(["Sunny, 24 C"], "gpt-5.5")
    assert result["reason2"] == "stop" and result["model"] == "gpt-5.5"
    second = codex_bodies(emulator)[1]
    kinds = [item.get("type", "message") for item in second["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert second["input"][1]["call_id"] == second["input"][2]["call_id"]


def test_named_choice_and_several_calls(emulator: Emulator, mitm: Mitm, token: str) -> None:
    clock = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
    result = raw(
        reverse_env(mitm, token),
        model="gpt-5.5",
        messages=user("Time please"),
        tools=[WEATHER, clock],
        tool_choice={"type": "function", "function": {"name": "clock"}},
    )
    (call,) = result["whole"]["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "clock"
    assert codex_bodies(emulator)[0]["tool_choice"] == {"type": "function", "name": "clock"}
    both = raw(
        reverse_env(mitm, token),
        model="gpt-5.5",
        messages=user('call get_weather({"city": "A", "days": 1}) then call clock({})'),
        tools=[WEATHER, clock],
        stream=True,
    )
    heads = [d for d in tool_deltas(both["chunks"]) if "id" in d]
    assert [(h["index"], h["function"]["name"]) for h in heads] == [
        (0, "get_weather"),
        (1, "clock"),
    ]
    assert finishes(both["chunks"]) == ["tool_calls"]


def test_structured_output_native(emulator: Emulator, mitm: Mitm, token: str) -> None:
    script = """
    import openai
    from pydantic import BaseModel
    class City(BaseModel):
        name: str
        population: int
    client = openai.OpenAI(max_retries=0)
    done = client.chat.completions.parse(model="gpt-4o", response_format=City,
        messages=[{"role": "user", "content": "A big city"}])
    emit({"parsed": done.choices[0].message.parsed.model_dump(), "model": done.model})
    """
    (result,) = run_client(script, reverse_env(mitm, token))
    assert set(result["parsed"]) == {"name", "population"} and result["model"] == "gpt-5.5"
    fmt = codex_bodies(emulator)[0]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "City" and fmt["strict"] is True


def test_legacy_functions_on_codex(mitm: Mitm, token: str) -> None:
    result = raw(
        reverse_env(mitm, token),
        model="gpt-4o",
        messages=user(ASK),
        functions=[WEATHER["function"]],
        stream=True,
    )
    calls = [
        ch["delta"]["function_call"]
        for c in result["chunks"]
        for ch in c["choices"]
        if ch.get("delta", {}).get("function_call")
    ]
    assert calls[0] == {"name": "get_weather", "arguments": ""}
    assert json.loads("".join(c["arguments"] for c in calls[1:])) == {"city": "Paris", "days": 2}
    assert finishes(result["chunks"]) == ["function_call"]


def test_stop_and_max_tokens_applied_here(emulator: Emulator, mitm: Mitm, token: str) -> None:
    fmt = {"type": "json_object"}
    stopped = raw(
        reverse_env(mitm, token),
        model="gpt-5.5",
        messages=user("Say something"),
        response_format=fmt,
        stop=["Codex"],
    )
    choice = stopped["whole"]["choices"][0]
    assert choice["finish_reason"] == "stop" and "Codex" not in choice["message"]["content"]
    body = codex_bodies(emulator)[0]
    assert "stop" not in body and "max_output_tokens" not in body
    cut = raw(
        reverse_env(mitm, token),
        model="gpt-5.5",
        messages=user("Say something"),
        response_format=fmt,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert finishes(cut["chunks"]) == ["length"]
    assert cut["chunks"][-1]["usage"]["completion_tokens"] <= 3


def test_plain_chat_stays_on_the_web_and_failures_fall_back(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    plain = raw(reverse_env(mitm, token), model="gpt-4o", messages=user("plain"))
    assert plain["whole"]["choices"][0]["message"]["content"] == expected_answer("plain", "gpt-4o")
    assert codex_bodies(emulator) == []
    codex_plan(emulator.url, preset="usage_not_included")
    fallback = raw(
        reverse_env(mitm, token), model="gpt-4o", messages=user("Weather in Oslo?"), tools=[WEATHER]
    )
    choice = fallback["whole"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"  # emulated on the web conversation
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    "plan",
    [
        {"failed": "server_error", "fail_after_events": 6},
        {"drop_after_events": 6},
        {"end_after_events": 6},
    ],
    ids=["failed", "dropped", "cut"],
)
def test_codex_failure_mid_answer_is_an_error(
    emulator: Emulator, mitm: Mitm, token: str, plan: dict[str, Any]
) -> None:
    codex_plan(emulator.url, **plan)
    result = raw(
        reverse_env(mitm, token),
        model="gpt-5.5",
        messages=user("hello"),
        tools=[WEATHER],
        stream=True,
    )
    assert "error" in result and "chunks" not in result, result


@pytest.mark.parametrize("mode", MODES)
def test_langchain_on_codex(mitm: Mitm, token: str, mode: str) -> None:
    script = (
        """
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    @tool
    def get_weather(city: str, days: int) -> str:
        "The weather in a city."
        return f"Sunny in {city} for {days} days"

    llm = ChatOpenAI(model="gpt-4o", max_retries=0)
    agent = llm.bind_tools([get_weather])
    messages = [HumanMessage(%r)]
    for _ in range(3):
        reply = agent.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))

    class Person(BaseModel):
        name: str
        age: int

    structured = {}
    for method in ("json_schema", "function_calling", "json_mode"):
        try:
            value = llm.with_structured_output(Person, method=method).invoke(
                'Ann is 31. Reply in JSON like {"name": "Ann", "age": 31}.')
            structured[method] = sorted(value.model_dump()) if value is not None else None
        except Exception as e:
            structured[method] = type(e).__name__
    emit({"final": messages[-1].content, "turns": len(messages), "structured": structured})
    """
        % ASK
    )
    (result,) = run_client(script, env_for(mitm, mode, token), timeout=120)
    assert result["turns"] == 4
    assert result["final"] == expected_codex_tool_answer(["Sunny in Paris for 2 days"], "gpt-5.5")
    assert result["structured"]["json_schema"] == ["age", "name"]
    assert result["structured"]["function_calling"] == ["age", "name"]
    assert result["structured"]["json_mode"] == ["age", "name"]


def test_plain_text_answer_on_always(
    mitm_factory: MitmFactory, emulator: Emulator, token: str, tmp_path: Any
) -> None:
    env = {"CHATGPT_BASE_URL": emulator.url, "CODEX_BACKEND": "always"}
    with mitm_factory.run(tmp=tmp_path, env=env) as m:
        result = raw(reverse_env(m, token), model="gpt-4o", messages=user("hello"))
    message = result["whole"]["choices"][0]["message"]
    assert message["content"] == expected_codex_answer("hello", "gpt-5.5")
    assert result["whole"]["model"] == "gpt-5.5"
