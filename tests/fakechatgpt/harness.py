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
from .tokens import mint_access_token

__all__ = [
    "Emulator",
    "EmulatorFactory",
    "run_emulator",
    "next_plan",
    "received",
    "reset",
    "advance_clock",
    "add_refresh_tokens",
    "fake_state",
    "mint_access_token",
    "expected_answer",
    "expected_reasoning",
]

REPO = Path(__file__).resolve().parents[2]


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


def advance_clock(url: str, seconds: float) -> None:
    """Move the emulator's clock (token expiry) forward."""
    _call(url, "/_fake/clock", {"advance_s": seconds})


def add_refresh_tokens(url: str, tokens: list[str]) -> None:
    _call(url, "/_fake/refresh_tokens", {"tokens": tokens})


def fake_state(url: str) -> dict[str, Any]:
    result: dict[str, Any] = _call(url, "/_fake/state")
    return result
