"""Codex CLI itself (npm ``@openai/codex``, pinned in scripts/codex-cli.sh and installed
by it into .cache/codex-cli) runs a tool loop through a running chat2api against the
emulator: ``codex exec`` with a custom model provider (``wire_api = "responses"``)
asks for a shell command, runs it in a scratch folder, sends its output back and
prints the final answer. On both listeners: the reverse URL as ``base_url``, and
``https://api.openai.com/v1`` through the HTTPS proxy."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, expected_codex_tool_answer, received
from tests.support.clients import proxy_env
from tests.support.mitm import ROOT, Mitm

MODEL = "gpt-5.5"
PROMPT = 'List the files here. call exec_command({"cmd": "ls"})'


@pytest.fixture(scope="module")
def codex_bin() -> str:
    """Codex CLI's binary, installed on first use (needs npm and the npm registry)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "codex-cli.sh")], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"env": {"TIMEOUT_IDLE": "10"}}


def config_toml(base_url: str) -> str:
    """The custom provider, as the README shows it."""
    return (
        f'model = "{MODEL}"\n'
        'model_provider = "chat2api"\n\n'
        "[model_providers.chat2api]\n"
        'name = "chat2api"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        'env_key = "CHAT2API_KEY"\n'
    )


@pytest.mark.parametrize("mode", ["reverse", "proxy"])
def test_codex_exec_runs_a_shell_tool_loop(
    codex_bin: str, mitm: Mitm, emulator: Emulator, token: str, tmp_path: Path, mode: str
) -> None:
    home, scratch = tmp_path / "codex-home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    (scratch / "marker-7f3a.txt").write_text("hello\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HTTP"))}
    env.update(CODEX_HOME=str(home), CHAT2API_KEY=token)
    if mode == "reverse":
        base_url = mitm.base_url
    else:
        base_url = "https://api.openai.com/v1"
        client = proxy_env(mitm, token)
        env.update(HTTPS_PROXY=client["HTTPS_PROXY"], SSL_CERT_FILE=client["SSL_CERT_FILE"])
    (home / "config.toml").write_text(config_toml(base_url))
    proc = subprocess.run(
        [
            codex_bin,
            "exec",
            "--skip-git-repo-check",
            # The test box may have no sandbox support; the command is a plain ls.
            "--dangerously-bypass-approvals-and-sandbox",
            "-C",
            str(scratch),
            PROMPT,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + mitm.log()[-2000:]
    calls: list[dict[str, Any]] = [
        json.loads(r["body"])
        for r in received(emulator.url)
        if r["path"] == "/backend-api/codex/responses"
    ]
    assert len(calls) == 2, calls
    # The command ran in the scratch folder and its output went back to the model.
    (output,) = [i for i in calls[1]["input"] if i.get("type") == "function_call_output"]
    assert "marker-7f3a.txt" in output["output"]
    # Codex CLI's reasoning item made the round trip, ids stripped on the way.
    assert any(i.get("type") == "reasoning" for i in calls[1]["input"])
    assert all("id" not in i for c in calls for i in c["input"])
    # The final answer printed is the one generated from that output.
    assert proc.stdout.strip() == expected_codex_tool_answer([output["output"]], MODEL)
