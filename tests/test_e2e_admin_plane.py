"""The admin plane: every management and seed route refuses without the key
(401) and with a wrong one, before it does anything; keys are compared in
constant time; and nothing of it is reachable through the HTTPS-proxy listener.
"""

from __future__ import annotations

import asyncio
import hmac
import http.client
import inspect
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from accounts.admin import AdminApi
from accounts.filestore import FileStore
from accounts.pool import Pool
from tests.fakechatgpt.harness import Emulator, mint_access_token, received, reset
from tests.support.mitm import Mitm
from tests.support.rawhttp import Connection

ADMIN_KEY = "plane-admin-key-0123456789abcdef"
CODE = "plane-code-0123456789abcdef"
PREFIX = "c2a"
ID = "0123456789ab"

# Every management route: (method, path, body).
ROUTES: list[tuple[str, str, bytes]] = [
    ("GET", "/tokens/api/tokens", b""),
    ("POST", "/tokens/api/tokens", b"eyJhbGciOiJ.x.y\n"),
    ("DELETE", "/tokens/api/tokens", b""),
    ("DELETE", f"/tokens/api/tokens/{ID}", b""),
    ("GET", "/tokens/api/errors", b""),
    ("GET", "/tokens/api/nope", b""),
    ("GET", "/seedtoken", b""),
    ("POST", "/seedtoken", b'{"seed": "my-seed-123456"}'),
    ("DELETE", "/seedtoken", b'{"id": "0123456789ab"}'),
    ("DELETE", f"/seedtoken/{ID}", b""),
]
ALL_ROUTES = ROUTES + [(m, f"/{PREFIX}{p}", b) for m, p, b in ROUTES if p.startswith("/tokens")]

WRONG: list[dict[str, str]] = [
    {},
    {"authorization": "Bearer"},
    {"authorization": "Bearer "},
    {"authorization": "Bearer wrong"},
    {"authorization": f"Basic {ADMIN_KEY}"},
    {"authorization": f"Bearer {ADMIN_KEY}x"},
    {"authorization": f"Bearer {ADMIN_KEY[:-1]}"},
    {"authorization": f"Bearer {ADMIN_KEY.upper()}"},
    {"authorization": f"Bearer {CODE}{CODE}"},
    {"authorization": "Bearer \xff\xfe"},  # not UTF-8 on the wire
    {"x-admin-key": ADMIN_KEY},
    {"cookie": f"token={ADMIN_KEY}"},
]


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    env = {
        "ADMIN_KEY": ADMIN_KEY,
        "AUTHORIZATION": CODE,
        "API_PREFIX": PREFIX,
        "REFRESH_URL": emulator.url + "/oauth/token",
    }
    return {"env": env, "mirror": True, "pool": [mint_access_token(exp_in=86400)]}


def reverse_calls(
    mitm: Mitm, calls: list[tuple[str, str, dict[str, str], bytes]]
) -> list[tuple[int, dict[str, str], bytes]]:
    async def main() -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        for method, path, headers, body in calls:
            conn = Connection("127.0.0.1", mitm.reverse_port)
            try:
                headers = {"content-type": "application/json", **headers}
                a = await conn.request(method, path, body, headers, timeout=20)
                out.append((a.status, a.headers, a.body))
            finally:
                await conn.close()
        return out

    return asyncio.run(main())


def test_every_admin_route_refuses_without_the_right_key(emulator: Emulator, mitm: Mitm) -> None:
    reset(emulator.url)
    before = (mitm.data_dir / "token.txt").read_text()
    calls = [(m, p, h, b) for m, p, b in ALL_ROUTES for h in WRONG]
    answers = reverse_calls(mitm, calls)
    wrong = []
    for (method, path, headers, _), (status, answer_headers, body) in zip(
        calls, answers, strict=True
    ):
        error = json.loads(body).get("error") if body.startswith(b"{") else None
        if (
            status != 401
            or answer_headers.get("www-authenticate") != "Bearer"
            or not error
            or error.get("code") != "invalid_api_key"
        ):
            wrong.append(f"{method} {path} with {headers}: {status} {body[:120]!r}")
    assert not wrong, "\n".join(wrong)
    # Nothing was done: the pool is as it was, the backend was never called.
    assert (mitm.data_dir / "token.txt").read_text() == before
    assert received(emulator.url) == []
    assert "Traceback" not in mitm.log()


def test_the_right_keys_open_every_route(mitm: Mitm) -> None:
    reads = [(m, p, b) for m, p, b in ALL_ROUTES if m == "GET"]
    for key in (ADMIN_KEY, CODE):
        calls = [(m, p, {"authorization": f"Bearer {key}"}, b) for m, p, b in reads]
        for (method, path, _, _), (status, _, body) in zip(
            calls, reverse_calls(mitm, calls), strict=True
        ):
            expected = 404 if path.endswith("/nope") else 200
            assert status == expected, (method, path, body[:200])


def _through_proxy(
    mitm: Mitm, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(mitm.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", mitm.proxy_port, context=ctx, timeout=20)
    conn.set_tunnel("api.openai.com", 443)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_nothing_sensitive_through_the_proxy_listener(emulator: Emulator, mitm: Mitm) -> None:
    reset(emulator.url)
    paths = [(m, p, b) for m, p, b in ALL_ROUTES] + [
        ("GET", "/tokens", b""),
        ("GET", f"/{PREFIX}/tokens", b""),
        ("GET", "/", b""),
        ("GET", "/login", b""),
        ("GET", "/backend-api/me", b""),
        ("POST", "/backend-api/conversation", b"{}"),
        ("GET", "/bridge/anything", b""),
        ("GET", "/_fake/requests", b""),
    ]
    for method, path, body in paths:
        status, payload = _through_proxy(
            mitm, method, path, {"authorization": f"Bearer {ADMIN_KEY}"}, body
        )
        assert status == 404, (method, path, status, payload[:200])
        data = json.loads(payload)
        assert list(data) == ["error"], (path, data)  # an OpenAI 404, nothing else
        assert data["error"]["code"] == "unknown_url", (path, data)
        assert data["error"]["message"].startswith("Unknown request URL"), (path, data)
        for secret in (b'"count"', b"<html", b"eyJ", ADMIN_KEY.encode()):
            assert secret not in payload, (path, payload)
    # Nothing was forwarded anywhere: not to the backend, not to the real api.openai.com.
    assert received(emulator.url) == []


def test_keys_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every configured key is compared with ``hmac.compare_digest``, always all of them."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return bool(real(a, b))

    # Both modules call hmac.compare_digest through the module.
    assert "hmac.compare_digest" in inspect.getsource(AdminApi.authorised)
    assert "hmac.compare_digest" in inspect.getsource(Pool.match_code)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    codes = ("code-one-0123456789", "code-two-0123456789", "code-three-012345678")
    pool = Pool(FileStore(tmp_path), codes=codes)
    api = AdminApi(pool, admin_key=ADMIN_KEY)
    for given in (ADMIN_KEY, codes[0], codes[2], "wrong", ADMIN_KEY + "x"):
        seen.clear()
        try:
            api.authorised({"authorization": f"Bearer {given}"})
        except Exception:  # noqa: BLE001 - a refusal is fine here
            pass
        assert len(seen) == 1 + len(codes), (given, seen)  # no early exit
        assert all(b == given.encode() for _, b in seen)
        seen.clear()
        pool.match_code(given)
        assert len(seen) == len(codes), (given, seen)
