"""Start the emulator from a test: `with run_emulator("--format", "legacy") as emu: emu.url`.

The emulator runs as a subprocess (`python -m tests.fakechatgpt`), its output going to a log file
(not a pipe, which could fill and block it). Helpers talk to its `/_fake/*` control endpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answers import expected_answer, expected_reasoning
from .codex_answers import (
    default_arguments,
    expected_codex_answer,
    expected_codex_json,
    expected_codex_summary,
    expected_codex_tool_answer,
    plan_turn,
)
from .tokens import AUTH_CLAIM, b64url_decode, mint_access_token

__all__ = [
    "Emulator",
    "EmulatorFactory",
    "run_emulator",
    "next_plan",
    "received",
    "reset",
    "advance_clock",
    "set_sentinel",
    "add_refresh_tokens",
    "fake_state",
    "mint_access_token",
    "expected_answer",
    "expected_reasoning",
    "CODEX_FIXTURES",
    "codex_plan",
    "codex_headers",
    "codex_body",
    "token_account_id",
    "expected_codex_answer",
    "expected_codex_json",
    "expected_codex_summary",
    "expected_codex_tool_answer",
    "default_arguments",
    "plan_turn",
]

REPO = Path(__file__).resolve().parents[2]
# Real Codex/Responses captures, read in place (never copied into the repository).
CODEX_FIXTURES = REPO.parent / "shared" / "fixtures" / "codex"
if not CODEX_FIXTURES.is_dir():
    CODEX_FIXTURES = Path("/work/shared/fixtures/codex")


@dataclass
class Emulator:
    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]


#: What the ``emulator_factory`` fixture hands out: ``run_emulator``'s arguments in, a started
#: emulator out, stopped when the test ends.
EmulatorFactory = Callable[..., Emulator]


@contextlib.contextmanager
def run_emulator(*args: str, timeout: float = 15.0, **options: Any) -> Iterator[Emulator]:
    """Run the emulator; keyword options become flags (pow_difficulty=X -> --pow-difficulty X)."""
    argv = [sys.executable, "-m", "tests.fakechatgpt", "--host", "127.0.0.1", "--port", "0"]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    argv += list(args)
    log_dir = Path(tempfile.mkdtemp(prefix="fakechatgpt-"))
    log_path = log_dir / "emulator.log"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    url = line[len("listening on ") :].strip()
            if url is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"emulator exited: {log_path.read_text(errors='replace')}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"emulator did not start: {log_path.read_text(errors='replace')}"
                    )
                time.sleep(0.02)
        yield Emulator(url=url, port=int(url.rsplit(":", 1)[1]), log_path=log_path, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _call(url: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def next_plan(url: str, **plan: Any) -> Any:
    """Queue a fault plan for the next conversation (or `target="sentinel"`) calls."""
    return _call(url, "/_fake/next", plan)


def received(url: str) -> list[dict[str, Any]]:
    """Every request the emulator got (except /_fake/*), in order."""
    result: list[dict[str, Any]] = _call(url, "/_fake/requests")
    return result


def reset(url: str) -> None:
    _call(url, "/_fake/reset", {})


def set_sentinel(url: str, **challenges: Any) -> None:
    """What the next sentinel answers ask for: ``persona``, ``turnstile`` and ``arkose``
    (``{"dx": ..., "token": <what the conversation call must then carry>}``)."""
    _call(url, "/_fake/sentinel", challenges)


def advance_clock(url: str, seconds: float) -> None:
    """Move the emulator's clock (token expiry) forward."""
    _call(url, "/_fake/clock", {"advance_s": seconds})


def add_refresh_tokens(url: str, tokens: list[str]) -> None:
    _call(url, "/_fake/refresh_tokens", {"tokens": tokens})


def fake_state(url: str) -> dict[str, Any]:
    result: dict[str, Any] = _call(url, "/_fake/state")
    return result


def codex_plan(url: str, **plan: Any) -> Any:
    """Queue a plan for the next /backend-api/codex/responses calls (keys: codex_plan.py)."""
    return _call(url, "/_fake/next", dict(plan, target="codex"))


def token_account_id(token: str) -> str:
    """The `chatgpt_account_id` claim of an access token (what chatgpt-account-id must carry)."""
    payload = json.loads(b64url_decode(token.split(".")[1]))
    return str(payload[AUTH_CLAIM]["chatgpt_account_id"])


def codex_headers(token: str, account_id: str | None = None) -> dict[str, str]:
    """The headers the emulator requires on a Codex call (as Codex CLI sends them)."""
    return {
        "authorization": f"Bearer {token}",
        "chatgpt-account-id": account_id or token_account_id(token),
        "openai-beta": "responses=experimental",
        "originator": "codex_cli_rs",
        "session_id": "0199a0f0-0000-7000-8000-000000000000",
        "accept": "text/event-stream",
        "content-type": "application/json",
    }


def codex_body(prompt: str, model: str = "gpt-5.5", **fields: Any) -> dict[str, Any]:
    """A minimal body the emulator accepts; `fields` add or replace keys."""
    body: dict[str, Any] = {
        "model": model,
        "instructions": "You are a helpful assistant.",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}
        ],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "store": False,
        "stream": True,
    }
    body.update(fields)
    return body
