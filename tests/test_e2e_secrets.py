"""Secrets never leak: known canary tokens go through the suite's scenarios
(answers, refusals, faults mid-stream, refreshes, the admin API, both listeners),
then every log line, every answer body and every file under ``DATA_DIR`` that
is not the token store is scanned for them. Tokens shown anywhere are masked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.fakechatgpt.harness import (
    EmulatorFactory,
    add_refresh_tokens,
    fake_state,
    mint_access_token,
)
from tests.support.cells import run_cells
from tests.support.mitm import Mitm, MitmFactory
from tests.support.rawhttp import Connection

# Files whose job is to hold tokens (accounts/filestore.py).
TOKEN_STORE = {"token.txt", "error_token.txt", "refresh_map.json", "seeds.json"}


def canary(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def fingerprints(secret: str) -> list[str]:
    """The secret and a slice of its middle: a masked form (6 + 4 characters) has neither."""
    mid = len(secret) // 2
    return [secret, secret[mid - 6 : mid + 6]]


def leaks(secrets_: Iterable[str], texts: dict[str, str]) -> list[str]:
    found = []
    for secret in secrets_:
        for piece in fingerprints(secret):
            for where, text in texts.items():
                if piece in text:
                    found.append(f"{secret[:6]}… in {where}")
    return found


def raw_calls(mitm: Mitm, calls: list[tuple[str, str, dict[str, str], bytes]]) -> list[str]:
    """Requests on the reverse listener; every answer's head and body as text."""

    async def main() -> list[str]:
        conn = Connection("127.0.0.1", mitm.reverse_port)
        out = []
        try:
            for method, path, headers, body in calls:
                answer = await conn.request(method, path, body, headers, timeout=30)
                head = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
                out.append(f"{answer.status}\n{head}\n\n{answer.body.decode('utf-8', 'replace')}")
        finally:
            await conn.close()
        return out

    return asyncio.run(main())


def test_canary_tokens_never_leak(
    emulator_factory: EmulatorFactory, mitm_factory: MitmFactory, tmp_path: Path
) -> None:
    code = canary("code-")
    admin_key = canary("admin-")
    pool_ats = [mint_access_token(exp_in=86400) for _ in range(3)]
    pool_rt = "rt_" + secrets.token_urlsafe(40)
    direct_at = mint_access_token(exp_in=86400)
    stranger = canary("sk-proj-")  # an OpenAI key sent by mistake
    uploaded = mint_access_token(exp_in=86400)
    prefix = canary("p")  # API_PREFIX: the API's secret path
    known = [code, admin_key, *pool_ats, pool_rt, direct_at, stranger, uploaded, prefix]

    bodies: dict[str, str] = {}
    emu = emulator_factory()
    add_refresh_tokens(emu.url, [pool_rt])
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (data / "token.txt").write_text("\n".join([*pool_ats, pool_rt]) + "\n")
    env = {
        "CHATGPT_BASE_URL": emu.url,
        "AUTHORIZATION": code,
        "ADMIN_KEY": admin_key,
        "API_PREFIX": prefix,
        "REFRESH_URL": emu.url + "/oauth/token",
        "TIMEOUT_IDLE": "2",
        "TIMEOUT_FIRST_BYTE": "3",
    }
    mitm = mitm_factory(env, tmp=tmp_path)
    # Completions with the SDK through both listeners, with faults in between.
    scenarios: list[tuple[str, bool, str, dict[str, Any] | None]] = [
        ("pool-ok", True, code, None),
        ("pool-whole", False, code, None),
        ("direct-ok", True, direct_at, None),
        ("pool-401", False, code, {"preset": "unauthorized"}),
        ("pool-429", True, code, {"preset": "rate_limit"}),
        ("pool-cloudflare", False, code, {"preset": "cloudflare"}),
        ("direct-401", False, direct_at, {"preset": "unauthorized"}),
        ("direct-unusual", True, direct_at, {"preset": "unusual_activity"}),
        ("drop", True, code, {"drop_after_events": 10}),
        ("error-event", False, code, {"error_event": "boom", "error_after_events": 10}),
        ("stall", True, code, {"stall_ms": 4000, "stall_after_events": 10}),
        ("stranger", False, stranger, None),
        ("garbage-key", False, "not-a-token", None),
    ]
    cells = [
        {"name": n, "prompt": f"secret {n}", "stream": s, "key": k, "plan": p}
        for n, s, k, p in scenarios
    ]
    results = run_cells(mitm, cells, emulator_url=emu.url, api_prefix=prefix)
    for name, result in results.items():
        result.pop("calls")  # what the emulator got: the harness's view, not an answer
        bodies[f"SDK result {name}"] = json.dumps(result, ensure_ascii=False)
    assert results["pool-ok"]["text"] and results["pool-401"]["text"], results
    # The admin API and bad requests, with full answers.
    auth = {"authorization": f"Bearer {admin_key}"}
    answers = raw_calls(
        mitm,
        [
            ("GET", "/tokens/api/tokens", auth, b""),
            ("POST", "/tokens/api/tokens", {**auth, "content-type": "text/plain"},
             f"{uploaded}\n{stranger}\nrt_short\n".encode()),
            ("GET", "/tokens/api/tokens", auth, b""),
            ("GET", "/tokens/api/errors", auth, b""),
            ("GET", "/tokens/api/tokens", {"authorization": f"Bearer {code}x"}, b""),
            ("GET", "/tokens/api/tokens", {"authorization": f"Bearer {direct_at}"}, b""),
            ("POST", f"/{prefix}/v1/chat/completions",
             {"authorization": f"Bearer {direct_at}", "content-type": "application/json"},
             json.dumps({"model": direct_at, "messages": "x"}).encode()),
            ("POST", f"/{prefix}/v1/chat/completions", {"authorization": f"Bearer {code}"},
             b'{"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}'),
            ("GET", f"/{prefix}/v1/models/gpt-4o", {"authorization": "Bearer x"}, b""),
            ("GET", "/v1/models", {"authorization": f"Bearer {code}"}, b""),
            ("GET", "/tokens", {}, b""),
        ],
    )  # fmt: skip
    for i, text in enumerate(answers):
        bodies[f"answer {i}"] = text
    # The pool view shows masked tokens only, and shows them.
    view = json.loads(answers[2].split("\n\n", 1)[1])
    assert view["count"] >= 4 and all("…" in t["token"] for t in view["tokens"])
    state = fake_state(emu.url)
    log = mitm.log()
    files = {
        f"DATA_DIR/{p.relative_to(mitm.data_dir)}": p.read_text(errors="replace")
        for p in mitm.data_dir.rglob("*")
        if p.is_file() and p.name not in TOKEN_STORE
    }
    # The emulator's refresh rotated the refresh token: the new ones are secrets too.
    rotated = [t for t in state.get("refresh_tokens", {}) if t != pool_rt]
    everything = {"mitmdump log": log, **bodies, **files}
    found = leaks([*known, *rotated], everything)
    # The request whose model field *is* the token may echo it: only that is allowed, and
    # only in that one answer (the client sent it as the model name).
    found = [f for f in found if not f.endswith("in answer 6")]
    assert not found, "\n".join(found)
    # The scenarios did happen: a refusal was logged, the stores were written.
    assert "failed" in log and (tmp_path / "data" / "token.txt").exists()
    assert any(name.endswith("health.json") for name in files), sorted(files)
