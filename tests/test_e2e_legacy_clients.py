"""The original chat2api's clients against a running chat2api (issue 17, item 6):
its token page's forms and scripts (``/tokens/upload|clear|error``,
``/seed_tokens/clear``), ``/seedtoken`` in its own shapes, and Chat-Share's
``POST /auth/refresh``, each request shaped as those clients send it (curl
stands in for the browser form and the scripts)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    add_refresh_tokens,
    fake_state,
    mint_access_token,
)
from tests.support.mitm import Mitm, MitmFactory

ADMIN_KEY = "admin-key-0123456789abcdef"
CODE = "pool-code-0123456789"


def env_for(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        "CHATGPT_BASE_URL": emulator.url,
        "ENABLE_GATEWAY": "true",
        "AUTO_SEED": "true",
        "ADMIN_KEY": ADMIN_KEY,
        "AUTHORIZATION": CODE,
        "REFRESH_URL": emulator.url + "/oauth/token",
        "GATEWAY_ASSETS_URL": emulator.url,
        "GATEWAY_FILES_URL": emulator.url,
        "GATEWAY_SANDBOX_URL": emulator.url,
        "GATEWAY_STATSIG_URL": emulator.url,
        **extra,
    }


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    return {"env": env_for(emulator), "mirror": True}


def curl(m: Mitm, method: str, path: str, *args: str) -> tuple[int, dict[str, str], Any]:
    """One request with curl: (status, headers, JSON body)."""
    cmd = ["curl", "-sS", "-D", "-", "-X", method, "--noproxy", "*", *args]
    cmd.append(f"http://127.0.0.1:{m.reverse_port}{path}")
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, json.loads(body) if body.strip() else None


def curl_raw(m: Mitm, method: str, path: str, *args: str) -> tuple[int, dict[str, str], str]:
    """Like :func:`curl`, for answers that are not JSON."""
    cmd = ["curl", "-sS", "-D", "-", "-X", method, "--noproxy", "*", *args]
    cmd.append(f"http://127.0.0.1:{m.reverse_port}{path}")
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


KEY = ("-H", f"Authorization: Bearer {ADMIN_KEY}")


def test_tokens_upload_clear_and_error(mitm: Mitm) -> None:
    tokens = [mint_access_token(account_id=f"acct-{n}") for n in range(2)]
    # The original's page: an urlencoded form with a textarea named "text".
    text = "\n".join(["# my tokens", *tokens, ""])
    status, _, body = curl(mitm, "POST", "/tokens/upload", "--data-urlencode", f"text={text}")
    assert status == 401  # without the admin key
    status, headers, body = curl(
        mitm, "POST", "/tokens/upload", *KEY, "--data-urlencode", f"text={text}"
    )
    assert status == 200, body
    assert body["status"] == "success" and body["tokens_count"] == 2
    assert headers["x-request-id"]
    # A script posting multipart (curl -F, requests' files=), with a bad line.
    third = mint_access_token(account_id="acct-3")
    status, _, body = curl(
        mitm, "POST", "/tokens/upload", *KEY, "-F", f"text={third}\nsk-proj-notachatgpttoken1234"
    )
    assert status == 200, body
    assert body["tokens_count"] == 3 and body["added"] == 1
    assert body["rejected"][0]["reason"]
    assert "notachatgpttoken" not in json.dumps(body)
    status, _, body = curl(mitm, "POST", "/tokens/error", *KEY)
    assert status == 200 and body == {"status": "success", "error_tokens": []}
    status, _, body = curl(mitm, "POST", "/tokens/clear", *KEY)
    assert (status, body) == (200, {"status": "success", "tokens_count": 0})
    status, _, view = curl(mitm, "GET", "/tokens/api/tokens", *KEY)
    assert view["count"] == 0
    assert not any(t in mitm.log() for t in tokens)


def test_error_tokens_are_masked(mitm: Mitm, emulator: Emulator) -> None:
    dead = "rt_" + "d" * 40
    status, _, body = curl(mitm, "POST", "/tokens/upload", *KEY, "-d", f"text={dead}")
    assert status == 200, body
    # A dead refresh token lands on the error list at its first use.
    curl(
        mitm,
        "POST",
        "/v1/chat/completions",
        "-H",
        f"Authorization: Bearer {CODE}",
        "-H",
        "content-type: application/json",
        "-d",
        json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    status, _, body = curl(mitm, "POST", "/tokens/error", *KEY)
    assert status == 200 and body["status"] == "success"
    assert body["error_tokens"] and all("…" in t for t in body["error_tokens"])
    assert dead not in json.dumps(body)
    curl(mitm, "POST", "/tokens/clear", *KEY)


def test_token_in_url_is_refused(emulator: Emulator, mitm_factory: MitmFactory) -> None:
    # flow_detail=1, as run.sh leaves it: mitmdump prints every request line too.
    with mitm_factory.run(env_for(emulator), flow_detail=1) as m:
        token = mint_access_token()
        status, _, body = curl(m, "GET", f"/tokens/add/{token}", *KEY)
        assert status == 400
        assert "/tokens/upload" in body["error"]["message"]
        assert token not in json.dumps(body)
        _, _, view = curl(m, "GET", "/tokens/api/tokens", *KEY)
        assert view["count"] == 0
        assert "/tokens/add/<redacted>" in m.log()
        assert token not in m.log() and token[-30:] not in m.log()


def test_mirror_answers_carry_ids_but_no_cors(mitm: Mitm) -> None:
    origin = ("-H", "Origin: https://evil.example")
    status, headers, _ = curl_raw(mitm, "GET", "/login", *origin)
    assert status == 200 and headers["x-request-id"].startswith("req_")
    assert "access-control-allow-origin" not in headers
    code = ("-H", f"Authorization: Bearer {CODE}")
    status, headers, _ = curl(mitm, "GET", "/seedtoken", *code, *origin)
    assert status == 200 and headers["x-request-id"]
    assert "access-control-allow-origin" not in headers
    pre = ("-H", "Access-Control-Request-Method: POST")
    for path in ("/seedtoken", "/login", "/backend-api/me", "/tokens/upload"):
        _, headers, _ = curl_raw(mitm, "OPTIONS", path, *origin, *pre)
        assert "access-control-allow-origin" not in headers, path


def test_seedtoken_in_the_original_shapes(mitm: Mitm) -> None:
    at = mint_access_token(account_id="acct-seed")
    code = ("-H", f"Authorization: Bearer {CODE}")  # the original used an AUTHORIZATION code
    js = ("-H", "Content-Type: application/json")
    status, _, body = curl(
        mitm,
        "POST",
        "/seedtoken",
        *code,
        *js,
        "-d",
        json.dumps({"seed": "alice-seed-1", "token": at}),
    )
    assert status == 200, body
    assert body["status"] == "success" and body["message"] == "Token updated successfully"
    status, _, body = curl(mitm, "GET", "/seedtoken?seed=alice-seed-1", *code)
    assert status == 200 and body["status"] == "success"
    assert body["data"]["seed"] == "alice-seed-1" and body["data"]["token"] != at
    status, _, body = curl(mitm, "GET", "/seedtoken", *code)
    assert status == 200 and body["status"] == "success" and len(body["data"]) == 1
    status, _, body = curl(
        mitm, "DELETE", "/seedtoken", *code, *js, "-d", '{"seed": "alice-seed-1"}'
    )
    assert (status, body["message"]) == (200, "Seed 'alice-seed-1' deleted successfully")
    for seed in ("bob-seed-1", "carol-seed-1"):
        made = curl(
            mitm, "POST", "/seedtoken", *code, *js, "-d", json.dumps({"seed": seed, "token": at})
        )
        assert made[0] == 200, made
    status, _, body = curl(mitm, "DELETE", "/seedtoken", *code, *js, "-d", '{"seed": "clear"}')
    assert (status, body["message"]) == (200, "All seeds deleted successfully")
    _, _, body = curl(mitm, "GET", "/seedtoken", *code)
    assert body["data"] == {}
    status, _, _ = curl(mitm, "GET", "/seedtoken")
    assert status == 401


def test_seed_tokens_clear(mitm: Mitm) -> None:
    code = ("-H", f"Authorization: Bearer {CODE}")
    js = ("-H", "Content-Type: application/json")
    at = mint_access_token(account_id="acct-seed")
    for seed in ("dave-seed-1", "erin-seed-1"):
        data = json.dumps({"seed": seed, "token": at})
        status, _, body = curl(mitm, "POST", "/seedtoken", *code, *js, "-d", data)
        assert status == 200, body
    assert curl(mitm, "POST", "/seed_tokens/clear")[0] == 401
    status, _, body = curl(mitm, "POST", "/seed_tokens/clear", *KEY)
    assert (status, body) == (200, {"status": "success", "seed_tokens_count": 0})
    assert curl(mitm, "GET", "/seedtoken", *code)[2]["count"] == 0


def refresh_form(rt: str) -> tuple[str, ...]:
    # Chat-Share posts a form (application/x-www-form-urlencoded).
    return ("--data-urlencode", f"refresh_token={rt}")


def test_auth_refresh_for_chat_share(mitm: Mitm, emulator: Emulator) -> None:
    rt = "rt_" + "s" * 40
    add_refresh_tokens(emulator.url, [rt])
    status, _, body = curl(mitm, "POST", "/auth/refresh", *refresh_form(rt))
    assert status == 401  # closed by default: no free refresh proxy
    assert fake_state(emulator.url)["refresh_calls"] == 0
    status, headers, body = curl(mitm, "POST", "/auth/refresh", *KEY, *refresh_form(rt))
    assert status == 200, body
    assert body["accessToken"].startswith("eyJ")
    assert body["access_token"] == body["accessToken"]
    assert body["refresh_token"]
    assert isinstance(body["models"], list)
    assert body["accounts_info"]["accounts"]
    check = body["accountCheckInfo"]
    assert check["is_deactivated"] is False and check["plan_type"] == "plus"
    assert check["team_ids"] == []
    assert headers["x-request-id"]
    # An access token good for more than five days is used as it is, no refresh.
    calls = fake_state(emulator.url)["refresh_calls"]
    long_at = mint_access_token(exp_in=30 * 24 * 3600)
    status, _, body = curl(
        mitm, "POST", "/auth/refresh", *KEY, "--data-urlencode", f"access_token={long_at}"
    )
    assert status == 200, body
    assert body["accessToken"] == long_at
    assert fake_state(emulator.url)["refresh_calls"] == calls
    assert rt not in mitm.log() and long_at not in mitm.log()


def test_auth_refresh_open_is_rate_limited(emulator: Emulator, mitm_factory: MitmFactory) -> None:
    env = env_for(emulator, AUTH_REFRESH_OPEN="true", AUTH_REFRESH_PER_MINUTE="2")
    with mitm_factory.run(env, emulator_url=emulator.url, mirror=True) as m:
        at = mint_access_token(exp_in=30 * 24 * 3600)
        form = ("--data-urlencode", f"access_token={at}")
        assert curl(m, "POST", "/auth/refresh", *form)[0] == 200
        assert curl(m, "POST", "/auth/refresh", *form)[0] == 200
        status, headers, body = curl(m, "POST", "/auth/refresh", *form)
        assert status == 429 and int(headers["retry-after"]) >= 1
        # The admin key is not limited.
        assert curl(m, "POST", "/auth/refresh", *KEY, *form)[0] == 200
