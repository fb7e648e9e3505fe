"""The original's upstream settings, end to end: what reaches the emulator changes.

``IMPERSONATE`` / ``USER_AGENTS`` choose the browser every backend call looks like
(headers and the proof-of-work config agree); ``PROXY_URL`` is pinned per account
with ``{}`` as a stable session id; ``SENTINEL_PROXY_URL`` carries the
chat-requirements calls only; a ``.env`` next to the config is read.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, mint_access_token, received, reset, run_emulator
from tests.support.mitm import Mitm, start_mitm
from tests.support.recproxy import recording_proxy

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with run_emulator() as emu:
        yield emu


def complete(mitm: Mitm, token: str, text: str = "hello") -> dict[str, Any]:
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    req = urllib.request.Request(
        mitm.base_url + "/chat/completions",
        data=body.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def backend_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in received(emulator.url) if r["path"].startswith("/backend-")]


def test_user_agents_and_impersonate_reach_the_backend(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator.url)
    env = {"CHATGPT_BASE_URL": emulator.url, "USER_AGENTS": f"[{UA!r}]"}
    with start_mitm(tmp_path, env) as mitm:
        answer = complete(mitm, mint_access_token())
        assert answer["choices"][0]["message"]["content"]
    calls = backend_calls(emulator)
    assert {c["path"] for c in calls} >= {
        "/backend-api/sentinel/chat-requirements",
        "/backend-api/conversation",
    }
    for call in calls:
        headers = call["headers"]
        assert headers["user-agent"] == UA
        assert headers["sec-ch-ua-platform"] == '"Windows"'
        assert '"Google Chrome";v="124"' in headers["sec-ch-ua"]
    # The emulator also checks that the proof-of-work config carries the same
    # user agent (config[4]); the answer above came back, so it did.


def test_impersonate_edge(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator.url)
    env = {"CHATGPT_BASE_URL": emulator.url, "IMPERSONATE": "['edge101']"}
    with start_mitm(tmp_path, env) as mitm:
        complete(mitm, mint_access_token())
    for call in backend_calls(emulator):
        assert "Edg/101.0.0.0" in call["headers"]["user-agent"]
        assert '"Microsoft Edge";v="101"' in call["headers"]["sec-ch-ua"]


def test_proxies_pinned_per_account_and_sentinel_proxy(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator.url)
    first, second = mint_access_token(), mint_access_token()
    with recording_proxy() as main_a, recording_proxy() as main_b, recording_proxy() as sentinel:
        env = {
            "CHATGPT_BASE_URL": emulator.url,
            "PROXY_URL": f"{main_a.url('s-{}:pw')}, {main_b.url('s-{}:pw')}",
            "SENTINEL_PROXY_URL": sentinel.url("sentinel-{}:pw"),
        }
        with start_mitm(tmp_path, env) as mitm:
            for token in (first, second, first, second):
                complete(mitm, token)
        # Chat-requirements went through the sentinel proxy only, conversations never.
        assert sentinel.paths()
        assert all(p.endswith("/sentinel/chat-requirements") for p in sentinel.paths())
        main_paths = main_a.paths() + main_b.paths()
        assert main_paths.count("/backend-api/conversation") == 4
        assert not any("sentinel" in p for p in main_paths)
        # `{}` is a per-account session id: each account always used the same
        # proxy with the same id, and the id is not the token.
        ids = {hashlib.sha256(t.encode()).hexdigest()[:12]: t for t in (first, second)}
        users: dict[str, set[int]] = {}
        for n, proxy in enumerate((main_a, main_b)):
            for tunnel in proxy.tunnels:
                assert tunnel.user is not None and tunnel.user.startswith("s-")
                users.setdefault(tunnel.user.removeprefix("s-"), set()).add(n)
        assert set(users) <= set(ids) and users, users
        assert all(len(proxies) == 1 for proxies in users.values())
        sentinel_users = {t.user for t in sentinel.tunnels}
        assert sentinel_users <= {f"sentinel-{i}" for i in ids}


def test_dotenv_next_to_the_config(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator.url)
    config = tmp_path / "conf" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"chatgpt_base_url: {emulator.url}\n", encoding="utf-8")
    (config.parent / ".env").write_text("OAI_LANGUAGE=zh-CN\nRETRY_TIMEZ=2\n", encoding="utf-8")
    with start_mitm(tmp_path, {"CHAT2API_CONFIG": str(config)}) as mitm:
        complete(mitm, mint_access_token())
        log = mitm.log()
    assert all(c["headers"]["oai-language"] == "zh-CN" for c in backend_calls(emulator))
    assert "RETRY_TIMEZ is not a setting; did you mean RETRY_TIMES?" in log
