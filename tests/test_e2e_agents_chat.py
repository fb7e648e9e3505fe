"""The OpenAI Agents SDK on ``OpenAIChatCompletionsModel`` (chat completions, not Responses)
runs an agent with a Python function tool to its final output, through both listeners, on both
backends: the Codex backend (``CODEX_BACKEND=auto``) and the web conversation's emulated tools
(``never``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakechatgpt.harness import expected_codex_tool_answer, mint_access_token
from tests.support.clients import client_env, run_client
from tests.support.mitm import Mitm

AGENT = r"""
import asyncio
from openai import AsyncOpenAI
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
from agents import set_tracing_disabled
set_tracing_disabled(True)  # no trace upload to api.openai.com

calls = []

@function_tool
def get_weather(city: str) -> str:
    '''The weather in a city.'''
    calls.append(city)
    return f"{city}: 21 C and sunny"

async def main():
    client = AsyncOpenAI(max_retries=0, timeout=60)
    agent = Agent(
        name="weather",
        instructions="Answer with the tools you have.",
        tools=[get_weather],
        model=OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client),
    )
    prompt = 'What is the weather? call get_weather({"city": "Paris"})'
    result = await Runner.run(agent, prompt)
    streamed = Runner.run_streamed(agent, prompt)
    async for _ in streamed.stream_events():
        pass
    emit({"final": result.final_output, "streamed": streamed.final_output, "calls": calls})

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "2026"}


@pytest.fixture(scope="module", params=["codex", "web"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def chat2api_options(backend: str) -> dict[str, Any]:
    env = {"CODEX_BACKEND": "auto" if backend == "codex" else "never"}
    return {"env": env, "dialect": "2026"}


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_agent_on_chat_completions_runs_to_its_final_output(
    backend: str, mitm: Mitm, mode: str
) -> None:
    token = mint_access_token(exp_in=3600)
    (out,) = run_client(AGENT, client_env(mitm, mode, token), timeout=120)
    if backend == "codex":
        expected = expected_codex_tool_answer(["Paris: 21 C and sunny"], "gpt-5.5")
        assert out["final"] == expected and out["streamed"] == expected
    else:  # the emulator's web model calls with the arguments the prompt shows
        assert out["calls"] == ["Paris", "Paris"]
        for final in (out["final"], out["streamed"]):
            assert "Paris: 21 C and sunny" in final
