"""The admin API and the backend's log, as the end-to-end tests read them."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from tests.fakechatgpt.harness import Emulator, received
from tests.support.mitm import Mitm

#: The admin key the end-to-end modules configure unless they test keys themselves.
ADMIN_KEY = "admin-key-0123456789abcdef"


def admin(
    mitm: Mitm,
    method: str,
    path: str,
    *,
    key: str | None = ADMIN_KEY,
    body: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One admin API call with curl on the reverse listener: (status, headers, JSON)."""
    args = ["curl", "-sS", "-D", "-", "-X", method, "--noproxy", "*"]
    if key is not None:
        args += ["-H", f"Authorization: Bearer {key}"]
    if content_type is not None:
        args += ["-H", f"Content-Type: {content_type}"]
    if body is not None:
        args += ["--data-binary", "@-"]
    args.append(f"http://127.0.0.1:{mitm.reverse_port}{path}")
    out = subprocess.run(args, input=body or b"", capture_output=True, timeout=30, check=True)
    head, _, payload = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    data = json.loads(payload) if payload.strip().startswith(b"{") else payload.decode()
    return status, headers, data


def tokens_view(mitm: Mitm) -> dict[str, Any]:
    status, _, data = admin(mitm, "GET", "/tokens/api/tokens")
    assert status == 200, data
    assert isinstance(data, dict)
    return data


def conversations(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in received(emulator.url) if r["path"].endswith("/conversation")]


def bearers(emulator: Emulator) -> list[str]:
    return [r["headers"]["authorization"].removeprefix("Bearer ") for r in conversations(emulator)]


def wait_until(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)
