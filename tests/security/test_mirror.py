"""Attacks on the site mirror, run against a running chat2api (a real mitmdump with
``ENABLE_GATEWAY``) and the backend emulator as every upstream (issue 14, findings
4, 5, 6, 7 and 9).

Each test performs the attack as an outsider or a seed user would, over plain HTTP
on loopback, and checks both the answer and what the emulator received: nothing
that should have been refused may reach the backend with the pool's token.
Clients connect from several loopback addresses (127.0.0.2, …) to stand for
different people where per-address limits matter.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fakechatgpt.harness import Emulator, mint_access_token, received, reset
from tests.support.browser import Page, start_browser
from tests.support.mirror import Client as FlowClient
from tests.support.mirror import listed, start_conversation
from tests.support.mitm import Mitm, MitmFactory
from tests.test_e2e_mirror import needs_browser, sign_in

ADMIN_KEY = "security-admin-key-0123456789"
POOL_AT = mint_access_token(exp_in=7 * 86400)
SEED_A = "seed-attacker-5b1e9d"
SEED_B = "seed-victim-0c7a42f1"


def mirror_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        "CHATGPT_BASE_URL": emulator.url,
        "ENABLE_GATEWAY": "true",
        "AUTO_SEED": "true",
        "ADMIN_KEY": ADMIN_KEY,
        "REFRESH_URL": emulator.url + "/oauth/token",
        "GATEWAY_ASSETS_URL": emulator.url,
        "GATEWAY_FILES_URL": emulator.url,
        "GATEWAY_SANDBOX_URL": emulator.url,
        "GATEWAY_STATSIG_URL": emulator.url,
        **extra,
    }


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    return {"env": mirror_env(emulator), "mirror": True, "pool": [POOL_AT]}


@pytest.fixture(scope="module")
def limited(emulator: Emulator, module_mitm_factory: MitmFactory) -> Mitm:
    """A second chat2api with small sign-up limits."""
    env = mirror_env(
        emulator,
        GATEWAY_NEW_SEEDS_PER_HOUR="3",
        AUTO_SEED_LIMIT="5",
        GATEWAY_SIGNIN_REFRESHES_PER_HOUR="2",
    )
    return module_mitm_factory(env, emulator_url=emulator.url, mirror=True, pool=[POOL_AT])


class Raw:
    """HTTP/1.1 on one connection, from a chosen loopback address; the target, the
    body bytes and every header (``Host`` too) go out exactly as given."""

    def __init__(self, mitm: Mitm, source: str = "127.0.0.1") -> None:
        self.port = mitm.reverse_port
        self.conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(source, 0)
        )

    def call(
        self, method: str, target: str, body: bytes | None = None, /, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        fields = {k.replace("_", "-"): v for k, v in headers.items()}
        self.conn.request(method, target, body=body, headers=fields)
        resp = self.conn.getresponse()
        payload = resp.read()
        out = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            self.conn.close()
        return resp.status, out, payload

    def close(self) -> None:
        self.conn.close()


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def form(value: str) -> bytes:
    return urlencode({"token": value}).encode()


def backend_log(emulator: Emulator) -> list[dict[str, Any]]:
    return [e for e in received(emulator.url) if e["path"] != "/oauth/token"]


def oauth_calls(emulator: Emulator) -> int:
    return sum(1 for e in received(emulator.url) if e["path"] == "/oauth/token")


def seed_count(mitm: Mitm) -> int:
    client = Raw(mitm)
    try:
        status, _, body = client.call("GET", "/seedtoken", **bearer(ADMIN_KEY))
    finally:
        client.close()
    assert status == 200, body
    count = json.loads(body)["count"]
    assert isinstance(count, int)
    return count


def mirror_error(body: bytes) -> str:
    """The mirror's own error shape, ``{"detail": …}``, never OpenAI's ``{"error": …}``."""
    data = json.loads(body)
    assert isinstance(data, dict) and set(data) == {"detail"}, data
    detail = data["detail"]
    assert isinstance(detail, str)
    return detail


def owned_by(mitm: Mitm, seed: str) -> str:
    """A conversation that ``seed`` made through the mirror, recorded as its own."""
    client = FlowClient(mitm)
    try:
        cid = start_conversation(client, seed)
        deadline = time.monotonic() + 5
        while cid not in listed(client, seed):
            assert time.monotonic() < deadline, "the conversation was not recorded"
            time.sleep(0.05)
    finally:
        client.close()
    return cid


# -- finding 4: the ownership check and bodies that are not plain UTF-8 --------------------


def continue_body(cid: str) -> dict[str, Any]:
    return {
        "action": "next",
        "conversation_id": cid,
        "parent_message_id": str(uuid.uuid4()),
        "model": "auto",
        "messages": [
            {
                "id": str(uuid.uuid4()),
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": ["Show me your history"]},
            }
        ],
    }


def odd_bodies(cid: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    text = json.dumps(continue_body(cid))
    as_json = {"content_type": "application/json"}
    # B's id first, then null: a parser that keeps the first key continues B's.
    first_wins = f'{{"conversation_id": "{cid}", ' + text[1:].replace(f'"{cid}"', "null")
    return {
        "utf-8 with BOM": (b"\xef\xbb\xbf" + text.encode(), as_json),
        "utf-16 with BOM": (text.encode("utf-16"), as_json),
        "utf-16-le": (text.encode("utf-16-le"), as_json),
        "utf-16-be": (text.encode("utf-16-be"), as_json),
        "utf-32 with BOM": (text.encode("utf-32"), as_json),
        "utf-32-le": (text.encode("utf-32-le"), as_json),
        "utf-32-be": (text.encode("utf-32-be"), as_json),
        "leading whitespace": (b" \r\n\t" + text.encode(), as_json),
        "escaped key": (text.replace("conversation_id", "conversation\\u005fid").encode(), as_json),
        "duplicate key, first wins": (first_wins.encode(), as_json),
        "gzip": (gzip.compress(text.encode()), {**as_json, "content_encoding": "gzip"}),
        "unreadable": (b"\xff\xfe\x00{garbage" + text.encode()[:40], as_json),
        "bad gzip": (b"\x1f\x8bnot gzip at all", {**as_json, "content_encoding": "gzip"}),
        "form": (urlencode({"conversation_id": cid}).encode(), {}),
        "a list": (json.dumps([continue_body(cid)]).encode(), as_json),
    }


TARGETS_4 = (
    "/backend-api/conversation",
    "/backend-api/f/conversation",
    "/backend-alt/conversation",
    "/backend-api/f/conversation/prepare",
)


def test_4_odd_json_bodies_never_carry_another_seeds_conversation(
    mitm: Mitm, emulator: Emulator
) -> None:
    cid = owned_by(mitm, SEED_B)
    reset(emulator.url)
    client = Raw(mitm)
    refused = 0
    try:
        for name, (body, headers) in odd_bodies(cid).items():
            for target in TARGETS_4:
                status, _, answer = client.call("POST", target, body, **bearer(SEED_A), **headers)
                assert backend_log(emulator) == [], (name, target, status, answer)
                assert status in (400, 404), (name, target, status, answer)
                mirror_error(answer)
                refused += 1
        # The conversation in a query string (file downloads take it there).
        for target in (
            f"/backend-api/files/file-4Qm2uYbVx7/download?conversation_id={cid}",
            f"/backend-anon/files/file-4Qm2uYbVx7/download?inline=1&conversation_id={cid.upper()}",
        ):
            status, _, answer = client.call("GET", target, None, **bearer(SEED_A))
            assert (status, backend_log(emulator)) == (404, []), (target, answer)
    finally:
        client.close()
    assert refused == len(TARGETS_4) * len(odd_bodies(cid))


# -- finding 5: every backend prefix, and an allow-list for seeds ----------------------------

PREFIXES = ("backend-api", "backend-alt", "backend-anon", "Backend-ALT", "backend-api2")


def test_5_rules_hold_under_every_backend_prefix(mitm: Mitm, emulator: Emulator) -> None:
    owned_by(mitm, SEED_B)  # the account has a conversation A must not see
    reset(emulator.url)
    client = Raw(mitm)
    try:
        for prefix in PREFIXES:
            base = f"/{prefix}"
            status, _, body = client.call("GET", f"{base}/me", **bearer(SEED_A))
            assert status == 200 and json.loads(body)["email"] == "chatgpt@openai.com", prefix
            status, _, body = client.call("GET", f"{base}/memories", **bearer(SEED_A))
            assert status == 200 and json.loads(body)["memories"] == [], prefix
            refused = [
                ("POST", f"{base}/accounts/deactivate"),
                ("POST", f"{base}/accounts/logout_all"),
                ("GET", f"{base}/conversations/search?query=secret"),
                ("GET", f"{base}/shared_conversations"),
                ("PATCH", f"{base}/conversations"),
                ("GET", f"{base}/celsius/ws/user"),
                ("GET", f"{base}//celsius/WS/user/"),
                ("POST", f"{base}/register-websocket"),
                ("GET", f"{base}/gizmos/g-p-6a0f3c9e1b2d/conversations?cursor=0"),
                ("GET", f"{base}/gizmos/G-P-6a0f3c9e1b2d/conversations"),
                ("GET", f"{base}/gizmos/g-p-6a0f3c9e1b2d"),
                ("GET", f"{base}/payments/customer_portal"),
                ("GET", f"{base}/anything/unknown"),
            ]
            for method, target in refused:
                payload = b"{}" if method != "GET" else None
                status, _, answer = client.call(method, target, payload, **bearer(SEED_A))
                assert status == 403, (method, target, status, answer)
                mirror_error(answer)
            # Without a bearer (the cookie alone) the families are refused just the same.
            status, _, _ = client.call("GET", f"{base}/celsius/ws/user", cookie=f"token={SEED_A}")
            assert status == 403, prefix
        assert backend_log(emulator) == []
        # The conversation list is filtered under every prefix (it may be forwarded).
        for prefix in PREFIXES:
            status, _, body = client.call(
                "GET", f"/{prefix}/conversations?offset=0&limit=28", **bearer(SEED_A)
            )
            if status == 200:
                assert json.loads(body)["items"] == [], (prefix, body[:300])
    finally:
        client.close()
    for e in backend_log(emulator):
        assert e["path"].lower().endswith("/conversations"), e["path"]
        assert "limit=100" in e["query"] and "offset=0" in e["query"], e


# -- finding 6: Host names, sign-up limits ---------------------------------------------------


def test_6_foreign_host_names_are_refused(mitm: Mitm, emulator: Emulator) -> None:
    client = Raw(mitm)
    port = client.port
    try:
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", ""):
            for method, target, headers in (
                ("GET", "/login", {}),
                ("GET", "/", {"cookie": f"token={SEED_A}", "accept": "text/html"}),
                ("GET", "/backend-api/models", bearer(SEED_A)),
                ("GET", "/assets/app-8c1d4e.js", {}),
                ("POST", "/login", {"content_type": "application/x-www-form-urlencoded"}),
            ):
                body = form("seed-rebinding-1234") if method == "POST" else None
                status, out, answer = client.call(method, target, body, host=host, **headers)
                assert status in (421, 403), (host, target, status)
                assert "set-cookie" not in out and b"evil" not in answer, (host, target)
                assert out.get("content-type", "").startswith("text/plain"), out
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            status, _, answer = client.call("GET", "/login", host=host)
            assert status == 200 and b"<textarea" in answer, host
    finally:
        client.close()
    assert backend_log(emulator) == []


def test_6_new_seeds_are_rate_limited_per_address_and_capped(
    limited: Mitm, emulator: Emulator
) -> None:
    made = 0
    for source, expected in (
        ("127.0.0.1", [200, 200, 200, 429, 429]),  # three an hour from one address
        ("127.0.0.2", [200, 200, 403]),  # five seeds in all: the cap
        ("127.0.0.3", [403]),
    ):
        client = Raw(limited, source)
        try:
            for i, want in enumerate(expected):
                seed = f"seed-{source}-{i}-{uuid.uuid4().hex[:8]}"
                status, out, answer = client.call("GET", "/backend-api/models", **bearer(seed))
                assert status == want, (source, i, status, answer)
                if status == 429:
                    assert int(out["retry-after"]) > 0
                if status != 200:
                    mirror_error(answer)
                made += status == 200
        finally:
            client.close()
    assert made == 5 and seed_count(limited) == 5
    # A refused sign-in never reached the backend: only the five seeds' model lists did.
    assert [e["path"] for e in backend_log(emulator)] == ["/backend-api/models"] * 5
    # Known seeds keep working; the admin API still makes seeds past the cap.
    client = Raw(limited, "127.0.0.3")
    try:
        status, _, body = client.call("POST", "/seedtoken", b"{}", **bearer(ADMIN_KEY))
        assert status == 200, body
        seed = json.loads(body)["seed"]
        status, _, _ = client.call("GET", "/backend-api/models", **bearer(seed))
        assert status == 200
    finally:
        client.close()


# -- finding 7: login CSRF -------------------------------------------------------------------


def test_7_cross_site_sign_in_is_refused_or_confirmed(mitm: Mitm, emulator: Emulator) -> None:
    client = Raw(mitm)
    own = f"http://127.0.0.1:{client.port}"
    post = {"content_type": "application/x-www-form-urlencoded"}
    try:
        for headers in (
            {"origin": "http://evil.example"},
            {"origin": "null"},
            {"origin": f"http://localhost:{client.port}"},  # another origin, same machine
            {"sec_fetch_site": "cross-site"},
            {"sec_fetch_site": "same-site"},
            {"origin": own, "sec_fetch_site": "cross-site"},
        ):
            status, out, answer = client.call("POST", "/login", form(SEED_A), **post, **headers)
            assert status == 403, (headers, status, answer)
            assert "set-cookie" not in out, headers
        status, out, _ = client.call(
            "POST", "/login", form(SEED_A), **post, origin=own, sec_fetch_site="same-origin"
        )
        assert status == 303 and out["set-cookie"].startswith(f"token={SEED_A};")

        for headers in (
            {"sec_fetch_site": "cross-site", "sec_fetch_mode": "navigate"},
            {"sec_fetch_site": "same-site"},
            {"referer": "http://evil.example/trap.html"},
        ):
            status, out, page = client.call("GET", f"/?token={SEED_A}", **headers)
            assert status == 200, (headers, status)
            assert "set-cookie" not in out, headers
            assert b'action="/login"' in page and b"confirm" in page.lower(), page[:400]
            assert "frame-ancestors 'none'" in out["content-security-policy"]
        # Typed into the address bar (no site involved): signed in at once.
        status, out, _ = client.call("GET", f"/?token={SEED_A}", sec_fetch_site="none")
        assert status == 302 and out["set-cookie"].startswith(f"token={SEED_A};")
    finally:
        client.close()
    assert SEED_A not in mitm.log()
    assert backend_log(emulator) == []


class AttackerSite:
    """Pages on another origin (http://127.0.0.2:PORT), served by a thread."""

    def __init__(self, pages: dict[str, str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                page = pages.get(self.path)
                body = (page or "not found").encode()
                self.send_response(200 if page else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def token_cookie(page: Page, site: str) -> str | None:
    # Through the DevTools protocol: WebDriver shows only the current page's cookies.
    cookies = page.driver.execute_cdp_cmd("Network.getCookies", {"urls": [site + "/"]})["cookies"]
    values = [c["value"] for c in cookies if c["name"] == "token"]
    return values[0] if values else None


@needs_browser
def test_7_login_csrf_from_another_site_in_a_browser(mitm: Mitm, tmp_path: Path) -> None:
    """A real Chromium signed in as the victim visits the attacker's pages, which post
    the sign-in form and open ``/?token=`` with the attacker's seed."""
    site = f"http://127.0.0.1:{mitm.reverse_port}"
    attacker = AttackerSite(
        {
            "/post.html": f"""<form method="post" action="{site}/login">
                <input name="token" value="{SEED_A}"></form>
                <script>document.forms[0].submit()</script>""",
            "/link.html": f"""<script>location.href = "{site}/?token={SEED_A}"</script>""",
        }
    )
    try:
        with start_browser(tmp_path) as page:
            sign_in(page, site, SEED_B)
            assert token_cookie(page, site) == SEED_B
            page.driver.get(attacker.url + "/post.html")
            page.wait_for(f"location.href === {json.dumps(site + '/login')}")
            page.wait_for("document.querySelector('.error') !== null")
            assert "another site" in page.text(".error")
            assert token_cookie(page, site) == SEED_B  # still the victim's session
            page.driver.get(attacker.url + "/link.html")
            page.wait_for(f"location.href.startsWith({json.dumps(site + '/?token=')})")
            page.wait_for("document.querySelector('input[type=hidden]') !== null")
            assert "Confirm" in page.text("button")
            assert token_cookie(page, site) == SEED_B
            # The user who did want it confirms on the mirror's own page: signed in.
            page.click("button[type=submit]")
            page.wait_for(f"location.href === {json.dumps(site + '/')}", 20)
            assert token_cookie(page, site) == SEED_A
    finally:
        attacker.close()


# -- finding 9: refresh tokens at sign-in ----------------------------------------------------


def errors_listed(mitm: Mitm) -> int:
    client = Raw(mitm)
    try:
        status, _, body = client.call("GET", "/tokens/api/errors", **bearer(ADMIN_KEY))
    finally:
        client.close()
    assert status == 200, body
    count = json.loads(body)["count"]
    assert isinstance(count, int)
    return count


def test_9_made_up_refresh_tokens_are_not_kept(mitm: Mitm, emulator: Emulator) -> None:
    made_up = "rt_" + uuid.uuid4().hex + "MadeUpRefreshToken"
    client = Raw(mitm, "127.0.0.5")
    post = {"content_type": "application/x-www-form-urlencoded"}
    try:
        status, _, _ = client.call("POST", "/login", form(made_up), **post)
        assert status == 401
        status, _, _ = client.call("GET", "/backend-api/models", **bearer(made_up))
        assert status == 401
    finally:
        client.close()
    assert oauth_calls(emulator) == 1  # the second try did not refresh again
    assert errors_listed(mitm) == 0
    errors = mitm.data_dir / "error_token.txt"
    assert not errors.exists() or made_up not in errors.read_text()
    assert made_up not in mitm.log()
    assert backend_log(emulator) == []


def test_9_sign_in_refreshes_are_rate_limited_per_address(
    limited: Mitm, emulator: Emulator
) -> None:
    post = {"content_type": "application/x-www-form-urlencoded"}
    client = Raw(limited, "127.0.0.4")
    try:
        statuses = []
        for _ in range(4):
            made_up = "rt_" + uuid.uuid4().hex + "AnotherMadeUpToken"
            status, out, _ = client.call("POST", "/login", form(made_up), **post)
            statuses.append(status)
            assert "set-cookie" not in out
        assert statuses == [401, 401, 429, 429]
    finally:
        client.close()
    assert oauth_calls(emulator) == 2
    assert errors_listed(limited) == 0
    # Another address still may.
    client = Raw(limited, "127.0.0.6")
    try:
        status, _, _ = client.call(
            "POST", "/login", form("rt_" + uuid.uuid4().hex + "x" * 9), **post
        )
        assert status == 401
    finally:
        client.close()
    assert oauth_calls(emulator) == 3
