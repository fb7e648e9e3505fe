"""The original's upstream settings, end to end: what reaches the emulator changes.

``IMPERSONATE`` / ``USER_AGENTS`` choose the browser every backend call looks like
(headers and the proof-of-work config agree); ``PROXY_URL`` is pinned per account
with ``{}`` as a stable session id; ``SENTINEL_PROXY_URL`` carries the
chat-requirements calls only; a ``.env`` next to the config is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    mint_access_token,
    next_plan,
    received,
    reset,
    set_sentinel,
)
from tests.support.mitm import Mitm, MitmFactory
from tests.support.recproxy import recording_proxy

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


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


def test_user_agents_and_impersonate_reach_the_backend(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    env = {"CHATGPT_BASE_URL": emulator.url, "USER_AGENTS": f"[{UA!r}]"}
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
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


def test_impersonate_edge(mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator.url)
    env = {"CHATGPT_BASE_URL": emulator.url, "IMPERSONATE": "['edge101']"}
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        complete(mitm, mint_access_token())
    for call in backend_calls(emulator):
        assert "Edg/101.0.0.0" in call["headers"]["user-agent"]
        assert '"Microsoft Edge";v="101"' in call["headers"]["sec-ch-ua"]


def test_proxies_pinned_per_account_and_sentinel_proxy(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    first, second = mint_access_token(), mint_access_token()
    with recording_proxy() as main_a, recording_proxy() as main_b, recording_proxy() as sentinel:
        env = {
            "CHATGPT_BASE_URL": emulator.url,
            "PROXY_URL": f"{main_a.url('s-{}:pw')}, {main_b.url('s-{}:pw')}",
            "SENTINEL_PROXY_URL": sentinel.url("sentinel-{}:pw"),
        }
        with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
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


def test_dotenv_next_to_the_config(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    config = tmp_path / "conf" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"chatgpt_base_url: {emulator.url}\n", encoding="utf-8")
    (config.parent / ".env").write_text("OAI_LANGUAGE=zh-CN\nRETRY_TIMEZ=2\n", encoding="utf-8")
    with mitm_factory.run(tmp=tmp_path, env={"CHAT2API_CONFIG": str(config)}) as mitm:
        complete(mitm, mint_access_token())
        log = mitm.log()
    assert all(c["headers"]["oai-language"] == "zh-CN" for c in backend_calls(emulator))
    assert "RETRY_TIMEZ is not a setting; did you mean RETRY_TIMES?" in log


@contextlib.contextmanager
def solver(answer: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A solver service on loopback answering ``answer``; yields its URL and the bodies."""
    bodies: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            length = int(self.headers["content-length"])
            bodies.append(json.loads(self.rfile.read(length)))
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/solve", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("dialect", ["classic", "2026"])
def test_turnstile_and_arkose_solvers(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path, dialect: str
) -> None:
    reset(emulator.url)
    set_sentinel(
        emulator.url,
        persona="chatgpt-freeaccount",
        turnstile={"dx": "TDX", "token": "turnstile-ok"},
        arkose={"dx": "ADX", "token": "arkose-ok"},
    )
    with (
        solver({"t": "turnstile-ok"}) as (turnstile_url, turnstile_bodies),
        solver({"token": "arkose-ok", "solved": True}) as (arkose_url, arkose_bodies),
    ):
        env = {
            "CHATGPT_BASE_URL": emulator.url,
            "BACKEND_DIALECT": dialect,
            "TURNSTILE_SOLVER_URL": turnstile_url,
            "ARK0SE_TOKEN_URL": arkose_url,  # the original's spelling
        }
        with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
            answer = complete(mitm, mint_access_token())
    assert answer["choices"][0]["message"]["content"]
    (asked,) = turnstile_bodies
    ua = backend_calls(emulator)[0]["headers"]["user-agent"]
    assert asked["url"] == emulator.url and asked["dx"] == "TDX" and asked["ua"] == ua
    assert isinstance(asked["p"], str) and asked["p"].startswith("gAAAAAC")
    if dialect == "classic":  # the 2026 sentinel asks for no arkose
        assert arkose_bodies == [{"blob": "ADX", "method": "chat35"}]


def test_without_solvers_the_turn_goes_on_with_a_warning(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    set_sentinel(emulator.url, turnstile={"dx": "TDX"}, arkose={"dx": "ADX"})
    with mitm_factory.run(tmp=tmp_path, env={"CHATGPT_BASE_URL": emulator.url}) as mitm:
        answer = complete(mitm, mint_access_token())
        log = mitm.log()
    assert answer["choices"][0]["message"]["content"]
    assert "TURNSTILE_SOLVER_URL is not set" in log and "ARKOSE_TOKEN_URL is not set" in log


def _error(mitm: Mitm, token: str, model: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    req = urllib.request.Request(
        mitm.base_url + "/chat/completions",
        data=body.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_free_account_asking_for_a_paid_model_gets_404(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    set_sentinel(emulator.url, persona="chatgpt-freeaccount")
    with mitm_factory.run(tmp=tmp_path, env={"CHATGPT_BASE_URL": emulator.url}) as mitm:
        status, body = _error(mitm, mint_access_token(), "gpt-4")
        assert status == 404, body
        assert body["error"]["code"] == "model_not_found"
        assert body["error"]["message"] == (
            "The model `gpt-4` does not exist or you do not have access to it."
        )
        # A model of its plan still works.
        assert _error(mitm, mint_access_token(), "gpt-4o")[0] == 200
    paths = [c["path"] for c in backend_calls(emulator)]
    assert paths.count("/backend-api/conversation") == 1  # only the gpt-4o turn


def test_the_pool_tries_a_paid_account_first(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    free, paid = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    tokens = {free: mint_access_token(account_id=free), paid: mint_access_token(account_id=paid)}
    set_sentinel(emulator.url, personas={free: "chatgpt-freeaccount", paid: "chatgpt-paid"})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "token.txt").write_text(tokens[free] + "\n" + tokens[paid] + "\n")
    env = {"CHATGPT_BASE_URL": emulator.url, "AUTHORIZATION": "code-1", "RANDOM_TOKEN": "false"}
    with mitm_factory.run(tmp=tmp_path, env=env) as mitm:
        for _ in range(2):
            status, body = _error(mitm, "code-1", "gpt-4")
            assert status == 200, body
    calls = backend_calls(emulator)
    conversations = [c for c in calls if c["path"] == "/backend-api/conversation"]
    bearer = "authorization"
    assert {c["headers"][bearer] for c in conversations} == {f"Bearer {tokens[paid]}"}
    asked = {c["headers"][bearer] for c in calls if c["path"].endswith("chat-requirements")}
    assert f"Bearer {tokens[free]}" in asked  # the free one was tried, then skipped


def _stream(mitm: Mitm, token: str, model: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    req = urllib.request.Request(
        mitm.base_url + "/chat/completions",
        data=body.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        lines = resp.read().decode().splitlines()
    chunks = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    return headers, chunks


def test_a_switched_model_is_reported(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    with mitm_factory.run(tmp=tmp_path, env={"CHATGPT_BASE_URL": emulator.url}) as mitm:
        next_plan(emulator.url, answer_model="gpt-4o-mini", count=2)
        status, answer = _error(mitm, mint_access_token(), "gpt-4o")
        assert status == 200 and answer["model"] == "gpt-4o-mini"
        headers, chunks = _stream(mitm, mint_access_token(), "gpt-4o")
        assert headers["x-chat2api-model-downgraded"] == "gpt-4o -> gpt-4o-mini"
        assert chunks and {c["model"] for c in chunks} == {"gpt-4o-mini"}
        # auto: ChatGPT chooses, so only its own note of an adjustment counts.
        next_plan(
            emulator.url,
            answer_model="gpt-5-mini",
            model_adjustments=["auto:smaller_model:reached_message_cap"],
        )
        headers, chunks = _stream(mitm, mint_access_token(), "auto")
        assert headers["x-chat2api-model-downgraded"] == "auto -> gpt-5-mini"
        next_plan(emulator.url, answer_model="gpt-5-mini")
        headers, chunks = _stream(mitm, mint_access_token(), "auto")
        assert "x-chat2api-model-downgraded" not in headers
        assert {c["model"] for c in chunks} == {"auto"}
        # An answer from the model asked for is not reported.
        status, answer = _error(mitm, mint_access_token(), "gpt-4o")
        assert answer["model"] == "gpt-4o-2024-08-06"
        log = mitm.log()
    assert "model switched: gpt-4o was asked for (gpt-4o), ChatGPT answered with gpt-4o-mini" in log
    assert "(auto:smaller_model:reached_message_cap)" in log


def test_on_downgrade_error_and_retry(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    env = {"CHATGPT_BASE_URL": emulator.url, "ON_DOWNGRADE": "error"}
    with mitm_factory.run(tmp=tmp_path / "error", env=env) as mitm:
        next_plan(emulator.url, answer_model="gpt-4o-mini")
        status, body = _error(mitm, mint_access_token(), "gpt-4o")
    assert status == 503 and body["error"]["code"] == "model_downgraded", body
    assert "gpt-4o-mini instead of gpt-4o" in body["error"]["message"]

    reset(emulator.url)
    first, second = mint_access_token(), mint_access_token()
    (tmp_path / "retry" / "data").mkdir(parents=True)
    (tmp_path / "retry" / "data" / "token.txt").write_text(first + "\n" + second + "\n")
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "ON_DOWNGRADE": "retry",
        "AUTHORIZATION": "code-1",
        "RANDOM_TOKEN": "false",
        "ADMIN_KEY": "admin-key-123456",
    }
    with mitm_factory.run(tmp=tmp_path / "retry", env=env) as mitm:
        next_plan(emulator.url, answer_model="gpt-4o-mini")  # the first account's answer
        status, answer = _error(mitm, "code-1", "gpt-4o")
        assert status == 200 and answer["model"] == "gpt-4o-2024-08-06", answer
        req = urllib.request.Request(
            mitm.base_url.removesuffix("/v1") + "/tokens/api/tokens",
            headers={"authorization": "Bearer admin-key-123456"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            listing = json.loads(resp.read())
    notes = json.dumps(listing)
    assert "answered with gpt-4o-mini instead of gpt-4o" in notes
    conversations = [c for c in backend_calls(emulator) if c["path"].endswith("/conversation")]
    assert len(conversations) == 2


def test_auto_seed_off_makes_api_keys_seeds(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator.url)
    token = mint_access_token()
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "AUTO_SEED": "false",
        "ENABLE_GATEWAY": "true",
        "ADMIN_KEY": "admin-key-123456",
        "AUTHORIZATION": "code-1",
    }
    with mitm_factory.run(
        tmp=tmp_path, env=env, scripts=("addons/chat2api.py", "addons/mirror.py")
    ) as mitm:
        req = urllib.request.Request(
            mitm.base_url.removesuffix("/v1") + "/seedtoken",
            data=json.dumps({"seed": "my-seed-1234", "token": token}).encode(),
            headers={
                "authorization": "Bearer admin-key-123456",
                "content-type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status in (200, 201)
        status, answer = _error(mitm, "my-seed-1234", "gpt-4o")
        assert status == 200, answer
        for bearer in (token, "code-1", "not-a-seed"):
            status, answer = _error(mitm, bearer, "gpt-4o")
            assert status == 401 and answer["error"]["message"] == "Invalid Seed", answer
    conversations = [c for c in backend_calls(emulator) if c["path"].endswith("/conversation")]
    assert [c["headers"]["authorization"] for c in conversations] == [f"Bearer {token}"]
