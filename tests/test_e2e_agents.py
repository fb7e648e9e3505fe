"""The OpenAI Agents SDK (``openai-agents``, Responses API by default) runs an agent
with a Python function tool to its final output through a running chat2api, on
both listeners, answered by the emulator's Codex backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, expected_codex_tool_answer, received
from tests.support.clients import client_env, run_client
from tests.support.mitm import Mitm

MODEL = "gpt-5.5"

AGENT = r"""
import asyncio, os
from openai import AsyncOpenAI
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

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
        model=OpenAIResponsesModel(model=os.environ["C2A_MODEL"], openai_client=client),
    )
    prompt = 'What is the weather? call get_weather({"city": "Paris"})'
    result = await Runner.run(agent, prompt)
    streamed = Runner.run_streamed(agent, prompt)
    kinds = set()
    async for event in streamed.stream_events():
        kinds.add(event.type)
    emit({"final": result.final_output, "streamed": streamed.final_output,
          "calls": calls, "kinds": sorted(kinds)})

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"env": {"TIMEOUT_IDLE": "5"}}


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_agent_with_a_function_tool_runs_to_its_final_output(
    mitm: Mitm, emulator: Emulator, token: str, mode: str
) -> None:
    env = client_env(mitm, mode, token)
    (out,) = run_client(AGENT, {**env, "C2A_MODEL": MODEL}, timeout=120)
    expected = expected_codex_tool_answer(["Paris: 21 C and sunny"], MODEL)
    assert out["calls"] == ["Paris", "Paris"]
    assert out["final"] == expected and out["streamed"] == expected
    assert "raw_response_event" in out["kinds"]
    bodies: list[dict[str, Any]] = [
        json.loads(r["body"])
        for r in received(emulator.url)
        if r["path"] == "/backend-api/codex/responses"
    ]
    assert len(bodies) == 4  # two turns per run: the call, then the answer
    assert bodies[0]["instructions"] == "Answer with the tools you have."
    assert bodies[0]["tools"][0]["name"] == "get_weather"
