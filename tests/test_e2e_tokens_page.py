"""The ``/tokens`` management page in a real headless Chromium, against a running
mitmdump: log in with the key, upload, see the count, clear; without the key
the API answers 401 and the page asks for it again.

Chromium is Debian's ``chromium`` (``scripts/system-deps.sh`` installs it when
missing); set ``CHAT2API_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakechatgpt.harness import mint_access_token
from tests.support.browser import Page, browser_missing, start_browser
from tests.support.mitm import Mitm, MitmFactory

ADMIN_KEY = "page-admin-key-0123456789"
CODE = "page-pool-code-0123456789"

# Skipped only outside CI: `run.sh test` installs Chromium and its driver, so CI always runs them.
pytestmark = pytest.mark.skipif(
    browser_missing() is not None and os.environ.get("CI") != "true",
    reason=browser_missing() or "",
)


@pytest.fixture(scope="module")
def mitm(module_mitm_factory: MitmFactory) -> Mitm:
    """chat2api with no backend: the page only manages the pool."""
    return module_mitm_factory({"ADMIN_KEY": ADMIN_KEY, "AUTHORIZATION": CODE, "API_PREFIX": "c2a"})


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with start_browser(tmp_path) as page:
        yield page


def visible(element_id: str) -> str:
    return f"!document.getElementById({json.dumps(element_id)}).hidden"


def count_is(n: int) -> str:
    return f"document.getElementById('count').textContent.startsWith('{n} tokens')"


def fetch_status(page: Page, path: str, key: str | None) -> int:
    headers = json.dumps({"Authorization": f"Bearer {key}"} if key else {})
    status = page.evaluate(f"fetch({json.dumps(path)}, {{headers: {headers}}}).then(r => r.status)")
    assert isinstance(status, int)
    return status


@pytest.mark.parametrize("path", ["/tokens", "/c2a/tokens"])
def test_log_in_upload_see_the_count_clear(mitm: Mitm, page: Page, path: str) -> None:
    ats = [mint_access_token(exp_in=86400) for _ in range(2)]
    rt = "rt_" + "p" * 40
    page.goto(f"http://127.0.0.1:{mitm.reverse_port}{path}")
    # Without a key the page asks for one, and the API it calls answers 401.
    page.wait_for(visible("login"))
    assert page.evaluate(visible("main")) is False
    assert fetch_status(page, path + "/api/tokens", None) == 401
    assert fetch_status(page, path + "/api/tokens", "wrong") == 401

    # A wrong key is refused with the API's message.
    page.type_into("#key", "not-the-key")
    page.click("#login button")
    page.wait_for("document.getElementById('loginmsg').textContent.includes('Invalid admin key')")
    assert page.evaluate(visible("login"))

    # Log in with the admin key.
    page.type_into("#key", ADMIN_KEY)
    page.click("#login button")
    page.wait_for(visible("main"))
    page.wait_for(count_is(0))
    assert page.evaluate("document.getElementById('key').value") == ""  # not kept in the form

    # Upload three good lines, a comment and a bad one, typed as a user does.
    page.type_into("#text", f"# my accounts\n{ats[0]}\n{ats[1]},acct-7\n{rt}\nsk-wrong-kind-of-key")
    page.click("#upload")
    page.wait_for("document.getElementById('msg').textContent.startsWith('added 3')")
    assert "rejected 1" in page.text("#msg")
    page.wait_for(count_is(3))
    assert page.text("#count") == "3 tokens, 3 usable"
    rows = page.evaluate(
        "[...document.querySelectorAll('#rows tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[2] for row in rows] == ["access", "access", "refresh"]
    assert rows[1][3] == "acct-7"
    html = page.evaluate("document.documentElement.outerHTML")
    for token in (*ats, rt, ADMIN_KEY):
        assert token not in html  # masked everywhere, the key included
    assert ats[0][:6] + "…" + ats[0][-4:] in html
    assert (mitm.data_dir / "token.txt").read_text().splitlines() == [
        ats[0],
        f"{ats[1]},acct-7",
        rt,
    ]

    # Delete one row, then clear all (the confirm dialog is accepted).
    page.click("#rows tr:nth-child(3) button")
    page.wait_for(count_is(2))
    page.click("#clear")
    page.wait_for(count_is(0))
    assert page.dialogs and "Remove every token" in page.dialogs[-1]
    assert (mitm.data_dir / "token.txt").read_text() == ""

    # Forgetting the key shows the login again, and the API is closed to the page.
    page.click("#logout")
    page.wait_for(visible("login"))
    assert page.evaluate("sessionStorage.getItem('chat2api-admin-key')") is None
    assert fetch_status(page, path + "/api/tokens", None) == 401


def test_an_authorization_code_also_opens_the_page(mitm: Mitm, page: Page) -> None:
    page.goto(f"http://127.0.0.1:{mitm.reverse_port}/tokens")
    page.type_into("#key", CODE)
    page.click("#login button")
    page.wait_for(visible("main"))
    page.wait_for("document.getElementById('count').textContent.includes('usable')")
    # The page's script ran under its hash-pinned CSP, or nothing above would work.
    assert page.evaluate("document.getElementById('count').textContent").startswith("0 tokens")
