"""openai-node (the official TypeScript SDK, run by node) with tools, through both listeners,
on both backends: the web conversation's emulated tools (``CODEX_BACKEND=never``) and the
Codex backend (``auto``). openai-node and undici (its proxy agent) are installed by
scripts/openai-node.sh into .cache/openai-node, pinned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import mint_access_token
from tests.support.mitm import Mitm
from tests.test_e2e_tools import WEATHER

ROOT = Path(__file__).resolve().parents[1]
ASK = 'Weather in Paris for 2 days? call get_weather({"city": "Paris", "days": 2})'

SCRIPT = r"""
const OpenAI = require('openai');
const { ProxyAgent } = require('undici');
const spec = JSON.parse(process.env.C2A_SPEC);
const options = { maxRetries: 0 };
if (process.env.HTTPS_PROXY) {
  options.fetchOptions = { dispatcher: new ProxyAgent(process.env.HTTPS_PROXY) };
}
const client = new OpenAI(options);
(async () => {
  const out = { deltas: [], content: '', finishes: [] };
  const stream = await client.chat.completions.create({
    model: 'gpt-4o', messages: spec.messages, tools: spec.tools, stream: true });
  for await (const chunk of stream) {
    out.model = chunk.model;
    for (const choice of chunk.choices) {
      if (choice.delta.tool_calls) out.deltas.push(...choice.delta.tool_calls);
      if (choice.delta.content) out.content += choice.delta.content;
      if (choice.finish_reason) out.finishes.push(choice.finish_reason);
    }
  }
  const first = await client.chat.completions.create({
    model: 'gpt-4o', messages: spec.messages, tools: spec.tools });
  const message = first.choices[0].message;
  const messages = [...spec.messages, message, ...message.tool_calls.map(
    (c) => ({ role: 'tool', tool_call_id: c.id, content: 'Sunny, 24 C' }))];
  const second = await client.chat.completions.create({
    model: 'gpt-4o', messages, tools: spec.tools });
  out.final = second.choices[0].message.content;
  out.finalReason = second.choices[0].finish_reason;
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ error: String(e), status: e.status })); });
"""


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("npm") is None:
        pytest.fail("npm is needed for openai-node (apt-get install nodejs npm)")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "openai-node.sh")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "2026"}


@pytest.fixture(scope="module", params=["web", "codex"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def chat2api_options(backend: str) -> dict[str, Any]:
    env = {"CODEX_BACKEND": "never" if backend == "web" else "auto"}
    return {"env": env, "dialect": "2026"}


def run_node(node_modules: Path, env: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HTTP"))}
    full.update(env, NODE_PATH=str(node_modules), C2A_SPEC=json.dumps(spec))
    proc = subprocess.run(
        ["node", "-e", SCRIPT], env=full, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", ["proxy", "reverse"])
def test_openai_node_tools_streamed_and_a_loop(
    node_modules: Path, backend: str, mitm: Mitm, mode: str
) -> None:
    token = mint_access_token(exp_in=24 * 3600)
    if mode == "proxy":
        env = {
            "HTTPS_PROXY": mitm.proxy_url,
            "NODE_EXTRA_CA_CERTS": str(mitm.ca_path),
            "OPENAI_API_KEY": token,
        }
    else:
        env = {"OPENAI_BASE_URL": mitm.base_url, "OPENAI_API_KEY": token}
    spec = {"messages": [{"role": "user", "content": ASK}], "tools": [WEATHER]}
    out = run_node(node_modules, env, spec)
    assert "error" not in out, out
    first, rest = out["deltas"][0], out["deltas"][1:]
    assert first["index"] == 0 and first["id"].startswith("call_")
    assert first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert "city" in json.loads("".join(d["function"]["arguments"] for d in rest))
    assert out["finishes"] == ["tool_calls"]
    assert "Sunny, 24 C" in out["final"] and out["finalReason"] == "stop"
    assert out["model"] == ("gpt-5.5" if backend == "codex" else "gpt-4o-2024-08-06")
