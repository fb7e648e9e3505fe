"""Codex CLI on an account without the Codex backend: ``codex exec`` runs its shell tool loop
through chat2api with ``CODEX_BACKEND=never``, so ``/v1/responses`` is answered by the web
conversation with emulated tools (docs/tool-emulation.md). The emulator's web model obeys
chat2api's tool prompt and takes the arguments the prompt spells out."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, mint_access_token, received, reset
from tests.support.mitm import Mitm
from tests.test_e2e_codex_cli import PROMPT, codex_bin, config_toml

__all__ = ["codex_bin"]  # the fixture, shared with tests/test_e2e_codex_cli.py


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"dialect": "2026"}


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    return {"dialect": "2026", "env": {"CODEX_BACKEND": "never", "TIMEOUT_IDLE": "10"}}


def test_codex_exec_tool_loop_on_the_web_conversation(
    codex_bin: str, mitm: Mitm, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    token = mint_access_token(exp_in=3600)
    home, scratch = tmp_path / "codex-home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    (scratch / "marker-7f3a.txt").write_text("hello\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HTTP"))}
    env.update(CODEX_HOME=str(home), CHAT2API_KEY=token)
    (home / "config.toml").write_text(config_toml(mitm.base_url))
    proc = subprocess.run(
        [
            codex_bin,
            "exec",
            "--skip-git-repo-check",
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
    assert proc.returncode == 0, proc.stderr[-3000:] + mitm.log()[-3000:]
    bodies = [
        json.loads(r["body"]) for r in received(emulator.url) if r["path"].endswith("/conversation")
    ]
    assert len(bodies) == 2, bodies
    assert not any(r["path"].startswith("/backend-api/codex") for r in received(emulator.url))
    # The second turn carries the command's output back, as a tool result block.
    last = bodies[1]["messages"][-1]["content"]["parts"][0]
    assert last.startswith('<chat2api:result name="exec_command"') and "marker-7f3a.txt" in last
    assert "The tools answered:" in proc.stdout and "marker-7f3a.txt" in proc.stdout
