"""accounts.admin: the management API handlers and page."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from accounts.admin import PAGE, AdminApi, AdminResponse, admin_route
from accounts.filestore import FileStore
from accounts.pool import Pool
from accounts.tokens import token_id


def make_jwt(exp: float = 2e9) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp})}.sig"


AT = make_jwt()
RT = "rt_admin_" + "s" * 40
KEY = {"Authorization": "Bearer admin-secret"}


def make_api(tmp_path: Path, **kw: Any) -> AdminApi:
    store = FileStore(tmp_path)
    asyncio.run(store.open())
    pool = Pool(store, codes=kw.pop("codes", ["code-1"]))
    return AdminApi(pool, admin_key=kw.pop("admin_key", "admin-secret"), **kw)


def call(
    api: AdminApi,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> AdminResponse:
    answer = asyncio.run(api.handle(method, path, KEY if headers is None else headers, body))
    assert answer is not None
    return answer


def body(answer: AdminResponse) -> Any:
    assert answer.headers["content-type"] == "application/json"
    return json.loads(answer.body)


@pytest.mark.parametrize(
    ("path", "prefix", "route"),
    [
        ("/tokens", "", "/tokens"),
        ("/tokens/", "", "/tokens"),
        ("/tokens/api/tokens?x=1", "", "/tokens/api/tokens"),
        ("/p/tokens/api/errors", "p", "/tokens/api/errors"),
        ("/p/tokens", "/p/", "/tokens"),
        ("/v1/chat/completions", "p", None),
        ("/tokensx", "", None),
        ("/p/tokens", "", None),
    ],
)
def test_routes(path: str, prefix: str, route: str | None) -> None:
    assert admin_route(path, prefix) == route


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic admin-secret"}],
)
def test_api_needs_the_key(tmp_path: Path, headers: dict[str, str]) -> None:
    api = make_api(tmp_path)
    for method, path in [
        ("GET", "/tokens/api/tokens"),
        ("POST", "/tokens/api/tokens"),
        ("DELETE", "/tokens/api/tokens"),
        ("GET", "/tokens/api/errors"),
    ]:
        answer = call(api, method, path, headers, AT.encode())
        assert answer.status == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert body(answer)["error"]["code"] == "invalid_api_key"
    assert asyncio.run(api.pool.store.tokens()) == []


def test_codes_work_as_keys_and_no_key_means_disabled(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    assert call(api, "GET", "/tokens/api/tokens", {"authorization": "Bearer code-1"}).status == 200
    disabled = make_api(tmp_path / "x", admin_key=None, codes=[])
    assert call(disabled, "GET", "/tokens/api/tokens").status == 403


def test_upload_list_delete_clear(tmp_path: Path) -> None:
    api = make_api(tmp_path, prefix="secret")
    text = f"# c\n{AT}\n{RT},team-1\n{AT}\nnonsense\n".encode()
    added = body(call(api, "POST", "/secret/tokens/api/tokens", body=text))
    assert added["added"] == 2 and added["count"] == 2
    assert [r["reason"] for r in added["rejected"]] == [
        "too short for a refresh token",
        "duplicate",
    ]
    js = json.dumps({"tokens": [make_jwt(3e9), 42]}).encode()
    headers = {**KEY, "Content-Type": "application/json; charset=utf-8"}
    added = body(call(api, "POST", "/tokens/api/tokens", headers, js))
    assert added["added"] == 1 and added["rejected"] == [{"line": "…", "reason": "not a string"}]

    listing = body(call(api, "GET", "/tokens/api/tokens"))
    assert listing["count"] == 3 and listing["usable"] == 3
    ids = [t["id"] for t in listing["tokens"]]
    assert ids[0] == token_id(AT) and listing["tokens"][1]["account_id"] == "team-1"
    assert listing["tokens"][1]["kind"] == "refresh" and listing["tokens"][0]["state"] == "healthy"

    gone = call(api, "DELETE", f"/tokens/api/tokens/{ids[0]}")
    assert body(gone) == {"deleted": ids[0], "count": 2}
    assert call(api, "DELETE", f"/tokens/api/tokens/{ids[0]}").status == 404
    assert call(api, "DELETE", "/tokens/api/tokens/not-an-id").status == 404

    asyncio.run(api.pool.store.add_error(RT))
    errors = body(call(api, "GET", "/tokens/api/errors"))
    assert errors == {"count": 1, "errors": [{"id": token_id(RT), "token": "rt_adm…ssss"}]}
    assert body(call(api, "DELETE", "/tokens/api/tokens")) == {"count": 0}
    assert body(call(api, "GET", "/tokens/api/errors"))["count"] == 0
    assert (tmp_path / "token.txt").read_text() == ""


def test_no_raw_token_in_any_answer(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    secret_lines = [AT, f"{RT},team", "x" * 10 + "-garbage-line-" + "y" * 10]
    answers = [call(api, "POST", "/tokens/api/tokens", body="\n".join(secret_lines).encode())]
    asyncio.run(api.pool.store.add_error(RT))
    answers += [call(api, "GET", p) for p in ("/tokens/api/tokens", "/tokens/api/errors")]
    answers.append(call(api, "GET", "/tokens"))
    for answer in answers:
        for secret in (AT, RT, secret_lines[2], "admin-secret"):
            assert secret.encode() not in answer.body


def test_errors_use_the_openai_envelope(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    bad_json = {**KEY, "content-type": "application/json"}
    cases = [
        (call(api, "PUT", "/tokens/api/tokens"), 405),
        (call(api, "GET", "/tokens/api/nothing"), 404),
        (call(api, "POST", "/tokens/api/tokens", bad_json, b"{"), 400),
        (call(api, "POST", "/tokens/api/tokens", bad_json, b'{"tokens": "x"}'), 400),
        (call(api, "POST", "/tokens/api/tokens", body=b"\xff"), 400),
        (call(api, "POST", "/tokens/api/tokens", body=b"x" * ((1 << 20) + 1)), 413),
    ]
    for answer, status in cases:
        assert answer.status == status
        assert set(body(answer)["error"]) == {"message", "type", "param", "code"}


def test_page_is_self_contained(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    page = call(api, "GET", "/tokens", {})  # the page itself needs no key
    assert page.status == 200 and page.body == PAGE
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    html = page.body.decode()
    assert "sessionStorage" in html and "document.cookie" not in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "innerHTML" not in html
    assert call(api, "HEAD", "/tokens", {}).body == b""
    assert call(api, "POST", "/tokens", {}).status == 405
    assert asyncio.run(api.handle("GET", "/v1/models", {}, b"")) is None
