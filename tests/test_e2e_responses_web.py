"""``/v1/responses`` with function and custom tools on the web conversation (emulated tools,
``CODEX_BACKEND=never``), end to end with the openai SDK on both listeners: the stream
accumulator's order checks, argument deltas, a stateless tool loop, a custom tool, a forced call
that never comes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    next_plan,
    received,
)
from tests.support.clients import proxy_env, reverse_env, run_client
from tests.support.mitm import Mitm

MODES = ["proxy", "reverse"]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files."}


def sdk(env: dict[str, str], body: str, **spec: Any) -> dict[str, Any]:
    script = (
        "import os, openai\n"
        "spec = json.loads(os.environ['C2A_SPEC'])\n"
        "client = openai.OpenAI(max_retries=0, timeout=60)\n"
        "out = {}\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
        + "except Exception as e:\n"
        "    out['error'] = describe_error(e)\n"
        "emit(out)\n"
    )
    (result,) = run_client(script, {**env, "C2A_SPEC": json.dumps(spec)}, timeout=90)
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "2026"}


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"dialect": "2026", "env": {"CODEX_BACKEND": "never"}}


@pytest.mark.parametrize("mode", MODES)
def test_streamed_function_call_and_a_stateless_loop(mitm: Mitm, token: str, mode: str) -> None:
    env = proxy_env(mitm, token) if mode == "proxy" else reverse_env(mitm, token)
    out = sdk(
        env,
        """
kinds, deltas = [], []
with client.responses.stream(model='gpt-4o', input='Weather in Paris?', tools=[spec['tool']],
                             store=False) as s:
    for e in s:
        kinds.append(e.type)
        if e.type == 'response.function_call_arguments.delta':
            deltas.append(e.delta)
    final = s.get_final_response()
call = next(o for o in final.output if o.type == 'function_call')
out['kinds'], out['deltas'], out['args'] = kinds, deltas, call.arguments
history = [{'role': 'user', 'content': 'Weather in Paris?'}, call.model_dump(exclude_none=True),
           {'type': 'function_call_output', 'call_id': call.call_id, 'output': 'Sunny, 24 C'}]
for item in history:
    item.pop('id', None); item.pop('status', None)
second = client.responses.create(model='gpt-4o', input=history, tools=[spec['tool']], store=False)
out['final'] = second.output_text
""",
        tool=WEATHER,
    )
    assert "error" not in out, out
    assert out["kinds"][0] == "response.created" and out["kinds"][-1] == "response.completed"
    assert "response.function_call_arguments.done" in out["kinds"]
    assert len(out["deltas"]) >= 1 and "".join(out["deltas"]) == out["args"]
    assert json.loads(out["args"]) == {"city": "example"}
    assert "Sunny, 24 C" in out["final"]


def test_custom_tool_call(emulator: Emulator, mitm: Mitm, token: str) -> None:
    out = sdk(
        reverse_env(mitm, token),
        """
r = client.responses.create(model='gpt-4o', input='Fix the bug', tools=[spec['tool']],
                            tool_choice='required')
out['items'] = [o.model_dump() for o in r.output]
""",
        tool=PATCH,
    )
    assert "error" not in out, out
    call = next(i for i in out["items"] if i["type"] == "custom_tool_call")
    assert call["name"] == "apply_patch" and call["input"] == "example"
    body = json.loads(
        [r for r in received(emulator.url) if "conversation" in r["path"]][-1]["body"]
    )
    assert '"input"' in body["messages"][0]["content"]["parts"][0]


def test_forced_call_that_never_comes_fails(emulator: Emulator, mitm: Mitm, token: str) -> None:
    next_plan(emulator.url, tool_mode="prose", count=2)
    out = sdk(
        reverse_env(mitm, token),
        "client.responses.create(model='gpt-4o', input='x', tools=[spec['tool']], "
        "tool_choice='required')",
        tool=WEATHER,
    )
    assert out["error"]["status"] == 502, out
    assert "did not" in out["error"]["message"] or "prose" in out["error"]["message"]
