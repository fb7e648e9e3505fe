"""The site mirror end to end: a running mitmdump with ``ENABLE_GATEWAY``, the backend
emulator as every upstream (site, CDN, files, sandbox, Statsig), a real headless
Chromium for the pages, and plain HTTP for the path tricks.

What the emulator received shows what the mirror forwarded: the pool's real access
token, never a seed, the session marker or the ``token`` cookie. With
``CHAT2API_SCREENSHOTS=1`` the browser tests save the README's screenshots under
``docs/screenshots/``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pow
from mirror.stubs import SEED_STUBS
from settings.schema import DEFAULT_GATEWAY_BLOCKED_PATHS
from tests.fakechatgpt import site as fake_site
from tests.fakechatgpt.harness import (
    Emulator,
    fake_state,
    mint_access_token,
    received,
    reset,
    run_emulator,
)
from tests.support.browser import Page, chromium_path, start_browser
from tests.support.mitm import Mitm, start_mitm

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
ADMIN_KEY = "mirror-admin-key-0123456789"
POOL_AT = mint_access_token(exp_in=7 * 86400)
LIVE_RT = "rt_" + "MirrorRefreshToken0123456789abcdefghijklmnop"
SEED_A = "seed-alice-7f3c9a2b"
SEED_B = "seed-bob-41d8e6c0"
UUID = "0f3a6b2c-1d4e-4f5a-8b6c-7d8e9f0a1b2c"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with run_emulator(refresh_tokens=LIVE_RT) as emu:
        yield emu


@pytest.fixture(scope="module")
def mitm(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitm]:
    tmp = tmp_path_factory.mktemp("mirror")
    (tmp / "data").mkdir()
    (tmp / "data" / "token.txt").write_text(POOL_AT + "\n")
    env = {
        "CHATGPT_BASE_URL": emulator.url,
        "ENABLE_GATEWAY": "true",
        "AUTO_SEED": "true",
        "ADMIN_KEY": ADMIN_KEY,
        "REFRESH_URL": emulator.url + "/oauth/token",
        "GATEWAY_ASSETS_URL": emulator.url,
        "GATEWAY_FILES_URL": emulator.url,
        "GATEWAY_SANDBOX_URL": emulator.url,
        "GATEWAY_STATSIG_URL": emulator.url,
    }
    scripts = ("addons/chat2api.py", "addons/mirror.py")
    with start_mitm(tmp, env, scripts=scripts, reverse_target=emulator.url) as m:
        yield m


@pytest.fixture(autouse=True)
def clean(emulator: Emulator) -> None:
    reset(emulator.url)


def base(mitm: Mitm) -> str:
    return f"http://127.0.0.1:{mitm.reverse_port}"


class Client:
    """Raw HTTP/1.1 on one keep-alive connection: the path goes out exactly as given."""

    def __init__(self, mitm: Mitm) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", mitm.reverse_port, timeout=30)

    def call(
        self, method: str, target: str, body: Any = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("content-type", "application/json")
        self.conn.request(method, target, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload

    def close(self) -> None:
        self.conn.close()


def bearer(seed: str) -> dict[str, str]:
    return {"authorization": f"Bearer {seed}"}


def secrets_leaked(emulator: Emulator, *secrets: str) -> list[str]:
    """Secrets found in what the backend received (the refresh itself excepted)."""
    log = json.dumps([e for e in received(emulator.url) if e["path"] != "/oauth/token"])
    return [s for s in (*secrets, "chat2api-session", "token=") if s in log]


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("CHAT2API_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    data = page.send("Page.captureScreenshot", {"format": "png"})["data"]
    (SHOTS / name).write_bytes(base64.b64decode(data))


needs_browser = pytest.mark.skipif(
    chromium_path() is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (scripts/system-deps.sh installs it)",
)


def sign_in(page: Page, site: str, value: str) -> None:
    page.goto(site + "/login")
    page.wait_for("document.querySelector('textarea#token') !== null")
    page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 900, "height": 640, "deviceScaleFactor": 1, "mobile": False},
    )
    page.type_into("textarea#token", value)
    page.click("button[type=submit]")
    page.wait_for(f"location.href === {json.dumps(site + '/')}", 20)
    page.wait_for(
        "document.body.dataset.ready === '1' || document.body.dataset.ready === 'error'", 20
    )


# -- the site in a browser ------------------------------------------------------------


@needs_browser
def test_seed_login_in_a_browser_loads_the_site(
    mitm: Mitm, emulator: Emulator, tmp_path: Path
) -> None:
    site = base(mitm)
    client = Client(mitm)
    try:
        cid = start_conversation(client, SEED_A)
        deadline = time.monotonic() + 5
        while cid not in listed(client, SEED_A):
            assert time.monotonic() < deadline, "the conversation was not recorded"
            time.sleep(0.05)
    finally:
        client.close()
    with start_browser(tmp_path) as browser:
        page = browser.new_page()
        page.goto(site + "/login")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 900, "height": 640, "deviceScaleFactor": 1, "mobile": False},
        )
        assert "Seed, refresh token or access token" in page.text("label")
        screenshot(page, "mirror-login.png")
        sign_in(page, site, SEED_A)
        assert page.evaluate("document.body.dataset.ready") == "1", page.text("#hello")
        # The page's script ran from the rewritten CDN URL, and talked to the gateway.
        assert page.text("#hello") == "Hello, ChatGPT (chatgpt@openai.com)"  # the stub
        assert page.evaluate("document.getElementById('logo').naturalWidth") == 32
        assert page.evaluate("document.getElementById('home').href") == site + "/"
        assert page.evaluate("document.cookie") == ""  # HttpOnly
        assert page.evaluate(f"!!document.querySelector('li[data-id=\"{cid}\"]')")
        assert page.evaluate("document.body.dataset.total") == "1"  # only its own
        screenshot(page, "mirror-site.png")
    log = received(emulator.url)
    paths = [(e["method"], e["path"]) for e in log]
    assert ("GET", "/") in paths and ("GET", "/assets/app-8c1d4e.js") in paths
    assert ("GET", "/assets/logo-5e6f70.png") in paths
    assert ("GET", "/backend-api/me") not in paths  # a seed's identity is a stub
    lists = [e for e in log if e["path"] == "/backend-api/conversations"]
    assert lists and all(e["headers"]["authorization"] == f"Bearer {POOL_AT}" for e in lists)
    for e in log:
        if e["path"].startswith("/assets/"):
            assert "authorization" not in e["headers"] and "cookie" not in e["headers"]
    assert secrets_leaked(emulator, SEED_A) == []


@needs_browser
def test_refresh_token_login_and_logout(mitm: Mitm, emulator: Emulator, tmp_path: Path) -> None:
    site = base(mitm)
    with start_browser(tmp_path) as browser:
        page = browser.new_page()
        sign_in(page, site, LIVE_RT)
        assert page.evaluate("document.body.dataset.ready") == "1", page.text("#hello")
        # Their own account: /me is the emulator's, with the refreshed access token.
        assert page.text("#hello") == "Hello, Fake User (fake@example.com)"
        page.send("Page.navigate", {"url": site + "/logout"})
        page.wait_for(f"location.href === {json.dumps(site + '/login')}")
        page.wait_for("document.querySelector('textarea#token') !== null")
        page.send("Page.navigate", {"url": site + "/"})
        page.wait_for(f"location.href === {json.dumps(site + '/login')}")
    assert fake_state(emulator.url)["refresh_calls"] >= 1
    me = [e for e in received(emulator.url) if e["path"] == "/backend-api/me"]
    assert me and me[0]["headers"]["authorization"].startswith("Bearer eyJ")
    assert secrets_leaked(emulator, LIVE_RT) == []


# -- login by URL, cookies, admin API ---------------------------------------------------


def test_token_in_the_url_sets_the_cookie_and_leaves(mitm: Mitm) -> None:
    client = Client(mitm)
    try:
        status, headers, _ = client.call("GET", f"/?token={SEED_A}")
        assert status == 302 and headers["location"] == "/"
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"token={SEED_A};")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        status, headers, _ = client.call(
            "GET", f"/?token={SEED_A}", **{"x-forwarded-proto": "https"}
        )
        assert "; Secure" in headers["set-cookie"]
        status, headers, _ = client.call("GET", "/", accept="text/html")
        assert status == 302 and headers["location"] == "/login"
        status, headers, _ = client.call("GET", "/?token=short")
        assert status == 302 and headers["location"].startswith("/login?error=")
    finally:
        client.close()
    assert SEED_A not in mitm.log()


def test_seed_api_behind_the_admin_key(mitm: Mitm) -> None:
    client = Client(mitm)
    try:
        status, _, _ = client.call("GET", "/seedtoken")
        assert status == 401
        status, _, _ = client.call("GET", "/seedtoken", **bearer("wrong"))
        assert status == 401
        key = bearer(ADMIN_KEY)
        status, _, body = client.call("POST", "/seedtoken", {}, **key)
        assert status == 200
        made = json.loads(body)
        assert len(made["seed"]) >= 8 and made["entry_id"]
        status, _, body = client.call("GET", "/seedtoken", **key)
        assert made["id"] in [s["id"] for s in json.loads(body)["seeds"]]
        status, _, _ = client.call("GET", "/backend-api/me", **bearer(made["seed"]))
        assert status == 200
        status, _, body = client.call("DELETE", f"/seedtoken/{made['id']}", **key)
        assert status == 200 and json.loads(body)["deleted"] == [made["id"]]
    finally:
        client.close()


# -- isolation --------------------------------------------------------------------------


def start_conversation(client: Client, seed: str) -> str:
    """A new conversation through the mirror, as the site's front-end makes one."""
    rng = random.Random(7)
    profile = pow.pick_profile(rng)
    # The script and deployment id of the site's page, as its probe reports them.
    config = pow.classic_config(
        profile, script_src=fake_site.SCRIPTS[0], build_id=fake_site.DPL, rng=rng
    )
    p = pow.requirements_token(config, rng=rng)
    ua = {"user-agent": profile.user_agent}
    status, _, body = client.call(
        "POST", "/backend-api/sentinel/chat-requirements", {"p": p}, **bearer(seed), **ua
    )
    assert status == 200, body
    req = json.loads(body)
    work = req["proofofwork"]
    proof = pow.as_proof_token(pow.solve(config, work["seed"], work["difficulty"]))
    message = {
        "id": str(uuid.uuid4()),
        "author": {"role": "user"},
        "content": {"content_type": "text", "parts": ["Hello from a seed"]},
    }
    status, headers, body = client.call(
        "POST",
        "/backend-api/conversation",
        {
            "action": "next",
            "messages": [message],
            "parent_message_id": str(uuid.uuid4()),
            "model": "auto",
        },
        **bearer(seed),
        **ua,
        accept="text/event-stream",
        **{
            "oai-device-id": str(uuid.uuid4()),
            "openai-sentinel-chat-requirements-token": req["token"],
            "openai-sentinel-proof-token": proof,
        },
    )
    assert status == 200, body
    assert headers["content-type"].startswith("text/event-stream")
    m = re.search(rb'"conversation_id"\s*:\s*"([0-9a-f-]{36})"', body)
    assert m, body[:500]
    return m.group(1).decode()


def listed(client: Client, seed: str) -> list[str]:
    status, _, body = client.call(
        "GET", "/backend-api/conversations?offset=0&limit=28", **bearer(seed)
    )
    assert status == 200, body
    return [item["id"] for item in json.loads(body)["items"]]


def test_seeds_cannot_touch_each_others_conversations(mitm: Mitm, emulator: Emulator) -> None:
    client = Client(mitm)
    try:
        cid = start_conversation(client, SEED_B)
        deadline = time.monotonic() + 5
        while cid not in listed(client, SEED_B):
            assert time.monotonic() < deadline, "B's conversation was not recorded"
            time.sleep(0.05)
        assert cid not in listed(client, SEED_A)
        before = len(received(emulator.url))
        a = bearer(SEED_A)
        attempts = [
            ("GET", f"/backend-api/conversation/{cid}", None),
            ("GET", f"/backend-api/conversation/{cid.upper()}/", None),
            ("PATCH", f"/backend-api/conversation/{cid}", {"title": "mine now"}),
            ("PATCH", f"/backend-api//conversation/{cid}", {"is_visible": False}),
            ("POST", "/backend-api/conversation", {"action": "next", "conversation_id": cid}),
        ]
        for method, target, payload in attempts:
            status, _, answer = client.call(method, target, payload, **a)
            assert status == 404, (method, target, answer)
        assert len(received(emulator.url)) == before  # none of it reached the backend
        status, _, body = client.call("GET", f"/backend-api/conversation/{cid}", **bearer(SEED_B))
        assert status == 200 and json.loads(body)["conversation_id"] == cid
        status, _, _ = client.call(
            "PATCH", f"/backend-api/conversation/{cid}", {"title": "renamed"}, **bearer(SEED_B)
        )
        assert status == 200
        assert secrets_leaked(emulator, SEED_A, SEED_B) == []
    finally:
        client.close()


# -- blocked endpoints --------------------------------------------------------------------

EXAMPLES = {
    "backend-api/conversations/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}": (
        f"/backend-api/conversations/{UUID}"
    ),
    "backend-api/accounts/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/invites": (
        f"/backend-api/accounts/{UUID}/invites"
    ),
    "write:backend-api/settings": "/backend-api/settings/account_user_setting",
    "write:backend-api/accounts": "/backend-api/accounts/data_export",
    "write:backend-api/me": "/backend-api/me",
    "write:backend-api/conversations": "/backend-api/conversations",
}


def example(rule: str) -> str:
    return EXAMPLES.get(rule) or "/" + rule


def tricks(path: str) -> list[str]:
    """The same endpoint, spelt as a ban list that matched raw paths would miss."""
    head, _, last = path.rpartition("/")
    return [
        path,
        path + "/",
        path.upper(),
        f"{head}/%{ord(last[0]):02X}{last[1:]}",  # percent-encoded letter
        f"{head}%2F{last}" if head else f"/%2F{last}",  # encoded slash
        f"{head}%252F{last}" if head else f"/%252F{last}",  # double-encoded slash
        "/" + path.replace("/", "//"),  # double slashes
        f"{head}/x/../{last}",  # dot-dot segment
        f"/assets/..{path}",
        f"{head}/./{last}",
        path + "?x=1&token=y",  # a query string
    ]


def test_blocked_endpoints_with_every_trick_never_reach_the_backend(
    mitm: Mitm, emulator: Emulator
) -> None:
    client = Client(mitm)
    checked = 0
    try:
        client.call("GET", "/backend-api/me", **bearer(SEED_A))  # the seed exists
        reset(emulator.url)
        for rule in DEFAULT_GATEWAY_BLOCKED_PATHS:
            writes_only = rule.startswith("write:")
            methods = ["POST", "PUT", "PATCH", "DELETE"] + ([] if writes_only else ["GET"])
            canonical = example(rule.removeprefix("write:"))
            for target in tricks(canonical):
                for method in methods:
                    body: dict[str, Any] | None = {} if method != "GET" else None
                    status, _, answer = client.call(method, target, body, **bearer(SEED_A))
                    if method == "GET" and (method, canonical) in SEED_STUBS:
                        assert status == 200, (rule, method, target, answer)  # its stub
                    else:
                        assert status == 403, (rule, method, target, status, answer)
                    checked += 1
    finally:
        client.close()
    assert checked > 500
    assert received(emulator.url) == []
