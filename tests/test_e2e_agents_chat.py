"""The OpenAI Agents SDK on ``OpenAIChatCompletionsModel`` (chat completions, not Responses)
runs an agent with a Python function tool to its final output, through both listeners, on both
backends: the Codex backend (``CODEX_BACKEND=auto``) and the web conversation's emulated tools
(``never``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    expected_codex_tool_answer,
    mint_access_token,
    reset,
    run_emulator,
)
from tests.support.clients import proxy_env, reverse_env, run_client
from tests.support.mitm import Mitm, start_mitm

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
def emulator() -> Iterator[Emulator]:
    with run_emulator(dialect="2026") as emu:
        yield emu


@pytest.fixture(scope="module", params=["codex", "web"])
def mitm(
    request: pytest.FixtureRequest, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Mitm]]:
    backend = str(request.param)
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "BACKEND_DIALECT": "2026",
        "CODEX_BACKEND": "auto" if backend == "codex" else "never",
    }
    with start_mitm(tmp_path_factory.mktemp(backend), env) as m:
        yield backend, m


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_agent_on_chat_completions_runs_to_its_final_output(
    mitm: tuple[str, Mitm], emulator: Emulator, mode: str
) -> None:
    backend, m = mitm
    reset(emulator.url)
    token = mint_access_token(exp_in=3600)
    env = proxy_env(m, token) if mode == "proxy" else reverse_env(m, token)
    (out,) = run_client(AGENT, env, timeout=120)
    assert out["calls"] == ["Paris", "Paris"]
    if backend == "codex":
        expected = expected_codex_tool_answer(["Paris: 21 C and sunny"], "gpt-5.5")
        assert out["final"] == expected and out["streamed"] == expected
    else:  # the emulator's web model quotes the tool results
        for final in (out["final"], out["streamed"]):
            assert "Paris: 21 C and sunny" in final
