"""The site's home page as the sentinel reads it: scripts, build ids, one reading per 15 minutes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import pow
from errors import UpstreamUnavailable
from service.runtime import make_dialect
from settings import load_settings
from tests.test_upstream_dialects import ctx
from upstream.http import HttpAnswer
from upstream.site import FALLBACK, PAGE_TTL, SitePages, parse_page

ORIGIN = "https://chatgpt.example"
PAGE = (
    '<!doctype html><html lang="en" data-build="prod-abc123"><head>'
    '<script src="https://cdn.example/assets/c/First1/_/x.js"></script>'
    '<script src="/assets/app.js" defer></script>'
    "<script>inline()</script>"
    '<script src="https://cdn.example/assets/c/Last22/_/y.js?v=1&amp;w=2"></script>'
    '<script src="/assets/app.js"></script>'
    "</head><body></body></html>"
)


def test_parse_page_reads_scripts_dpl_and_build() -> None:
    page = parse_page(PAGE, ORIGIN)
    assert page.read
    assert page.scripts == (
        "https://cdn.example/assets/c/First1/_/x.js",
        ORIGIN + "/assets/app.js",  # absolute, as script.src reads it; once
        "https://cdn.example/assets/c/Last22/_/y.js?v=1&w=2",
    )
    assert page.dpl == "c/Last22/_"  # the last script with a deployment id wins
    assert page.build == "prod-abc123"
    assert page.sentinel_script() == pow.SENTINEL_SDK_URL  # not on this page


def test_parse_page_without_dpl_uses_the_build_and_finds_the_sdk() -> None:
    sdk = "https://chatgpt.example/backend-api/sentinel/sdk.js?v=7"
    page = parse_page(
        f'<html data-build="prod-9"><script src="/a.js"></script><script src="{sdk}"></script>',
        ORIGIN,
    )
    assert page.dpl == page.build == "prod-9"
    assert page.sentinel_script() == sdk


@pytest.mark.parametrize(
    "html",
    ["", "<html><body>maintenance</body></html>", '<html data-build="a b<script>">', "<<<"],
)
def test_a_page_without_scripts_or_build_is_not_read(html: str) -> None:
    page = parse_page(html, ORIGIN)
    assert not page.read and page.build is None and page.dpl is None
    assert page.script(__import__("random").Random(1)) == pow.SENTINEL_SDK_URL


class Http:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.urls: list[str] = []
        self.headers: list[dict[str, str]] = []

    async def request(self, method: str, url: str, **kw: Any) -> HttpAnswer:
        self.urls.append(url)
        self.headers.append(kw["headers"])
        await asyncio.sleep(0.01)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, HttpAnswer)
        return answer


def html(body: str) -> HttpAnswer:
    return HttpAnswer(status=200, headers={"content-type": "text/html"}, body=body.encode())


def test_one_reading_per_origin_for_15_minutes_then_again() -> None:
    now = [1000.0]
    http = Http([html(PAGE)])
    pages = SitePages(http, clock=lambda: now[0])  # type: ignore[arg-type]

    async def run() -> None:
        first = await pages.page(ctx(ORIGIN))
        assert first.dpl == "c/Last22/_"
        now[0] += PAGE_TTL - 1
        assert await pages.page(ctx(ORIGIN)) is first
        assert len(http.urls) == 1
        assert http.urls == [ORIGIN + "/"]
        assert http.headers[0]["sec-fetch-mode"] == "navigate"
        assert "authorization" not in http.headers[0]  # a navigation, not an API call
        now[0] += 2
        await pages.page(ctx(ORIGIN))
        assert len(http.urls) == 2
        await pages.page(ctx("https://other.example"))
        assert http.urls[-1] == "https://other.example/"

    asyncio.run(run())


def test_concurrent_turns_share_one_reading() -> None:
    http = Http([html(PAGE)])
    pages = SitePages(http)  # type: ignore[arg-type]

    async def run() -> None:
        got = await asyncio.gather(*(pages.page(ctx(ORIGIN)) for _ in range(5)))
        assert all(g is got[0] for g in got) and got[0].read

    asyncio.run(run())
    assert len(http.urls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        UpstreamUnavailable("connection refused"),
        HttpAnswer(status=403, headers={}, body=b"<html>Just a moment...</html>"),
        html("<html><body>no scripts</body></html>"),
    ],
)
def test_an_unreadable_page_is_the_fallback_with_a_warning_and_waits_15_minutes(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    http = Http([answer, html(PAGE)])
    pages = SitePages(http, clock=lambda: now[0])  # type: ignore[arg-type]

    async def run() -> None:
        with caplog.at_level(logging.WARNING):
            assert await pages.page(ctx(ORIGIN)) is FALLBACK
        assert "could not read the home page of https://chatgpt.example" in caplog.text
        assert "fixed script URL" in caplog.text
        now[0] += PAGE_TTL / 2
        assert await pages.page(ctx(ORIGIN)) is FALLBACK  # not asked again yet
        assert len(http.urls) == 1
        now[0] += PAGE_TTL
        assert (await pages.page(ctx(ORIGIN))).read

    asyncio.run(run())


def test_both_dialects_share_one_page_reader() -> None:
    dialect: Any = make_dialect(load_settings(None, {"BACKEND_DIALECT": "auto"}), None)  # type: ignore[arg-type]
    assert dialect.newer.site is dialect.older.site
