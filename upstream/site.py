"""What the site's home page tells the sentinel: its script URLs and its build id.

The browser probe that makes a requirements or proof-of-work token reports one of
the page's scripts (config element 5) and the build it runs (element 6), and the
2026 page sends its build as ``oai-client-version`` (docs/site-page.md). Both
dialects read them here, from ``GET {origin}/``, one page per origin, read again
every 15 minutes as the original did, whether the last read worked or not. A
page that cannot be read leaves the fixed fallbacks (the sentinel SDK's URL, no
build id) until the next read, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

from errors import Chat2ApiError
from pow import SENTINEL_SDK_URL
from upstream.context import TurnContext
from upstream.http import BackendHttp

__all__ = ["PAGE_TTL", "SitePage", "SitePages", "parse_page"]

log = logging.getLogger(__name__)

#: How long one reading of the page is used (the original's 15 minutes).
PAGE_TTL = 900.0
_PAGE_TIMEOUT = 10.0
_MAX_SCRIPTS = 200
# The original's "dpl": a deployment id in a script path, the last such script wins.
_DPL = re.compile(r"c/[^/]*/_")
_BUILD = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class SitePage:
    """One reading of the home page; ``read`` is False for the fallback."""

    scripts: tuple[str, ...] = ()
    #: ``<html data-build>``: the 2026 page's ``oai-client-version`` and element 6.
    build: str | None = None
    #: The classic element 6: the last ``c/<id>/_`` of a script path, else ``build``.
    dpl: str | None = None
    read: bool = False

    def script(self, rng: random.Random) -> str:
        """A script of the page, as the classic probe picks one (element 5)."""
        return rng.choice(self.scripts) if self.scripts else SENTINEL_SDK_URL

    def sentinel_script(self) -> str:
        """The sentinel SDK's own script when the page lists it (the 2026 element 5)."""
        for src in self.scripts:
            if src.split("?", 1)[0].endswith("/sentinel/sdk.js"):
                return src
        return SENTINEL_SDK_URL


FALLBACK = SitePage()


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.srcs: list[str] = []
        self.build: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and len(self.srcs) < _MAX_SCRIPTS:
            src = dict(attrs).get("src")
            if src and src.strip():
                self.srcs.append(src.strip())
        elif tag == "html" and self.build is None:
            build = dict(attrs).get("data-build")
            if build and _BUILD.match(build):
                self.build = build


def parse_page(html: str, origin: str) -> SitePage:
    """The scripts (absolute, as ``script.src`` reads) and build ids of a page."""
    parser = _Scripts()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # HTMLParser's complaints about broken markup
        pass
    scripts = tuple(dict.fromkeys(urljoin(origin + "/", s) for s in parser.srcs))
    dpl = None
    for src in scripts:
        found = _DPL.search(src)
        if found:
            dpl = found.group(0)
    return SitePage(
        scripts=scripts,
        build=parser.build,
        dpl=dpl or parser.build,
        read=bool(scripts or parser.build),
    )


class SitePages:
    """The home page of each upstream origin, shared by the dialects."""

    def __init__(
        self,
        http: BackendHttp,
        *,
        ttl: float = PAGE_TTL,
        timeout: float = _PAGE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._pages: dict[str, tuple[SitePage, float]] = {}
        self._reading: dict[str, asyncio.Future[SitePage]] = {}

    async def page(self, ctx: TurnContext) -> SitePage:
        """The origin's page as last read, read again when older than ``ttl``."""
        cached = self._pages.get(ctx.origin)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        reading = self._reading.get(ctx.origin)
        if reading is not None:  # another turn is reading it: wait for that reading
            return await asyncio.shield(reading)
        future: asyncio.Future[SitePage] = asyncio.get_running_loop().create_future()
        self._reading[ctx.origin] = future
        page = FALLBACK
        try:
            page = await self._read(ctx)
            # Also after a failure: the original does not ask again for 15 minutes.
            self._pages[ctx.origin] = (page, self._clock() + self.ttl)
        finally:
            del self._reading[ctx.origin]
            future.set_result(page)  # a cancelled reading leaves the waiters the fallback
        return page

    async def _read(self, ctx: TurnContext) -> SitePage:
        p = ctx.profile
        headers = {
            "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "accept-language": ctx.headers()["accept-language"],
            "user-agent": p.user_agent,
            "sec-fetch-dest": "document",
            "sec-fetch-mode": "navigate",
            "sec-fetch-site": "none",
            "upgrade-insecure-requests": "1",
        }
        if p.sec_ch_ua:
            headers["sec-ch-ua"] = p.sec_ch_ua
            headers["sec-ch-ua-mobile"] = p.sec_ch_ua_mobile
            headers["sec-ch-ua-platform"] = p.sec_ch_ua_platform
        why = ""
        try:
            answer = await self.http.request(
                "GET",
                ctx.origin + "/",
                headers=headers,
                impersonate=p.impersonate,
                timeout=self.timeout,
                proxy=ctx.proxy,
            )
        except Chat2ApiError as e:
            why = e.message
        else:
            if answer.status == 200:
                page = parse_page(answer.body.decode("utf-8", "replace"), ctx.origin)
                if page.read:
                    log.info(
                        "home page of %s: %d scripts, build %s",
                        ctx.origin,
                        len(page.scripts),
                        page.build or "unknown",
                    )
                    return page
                why = "it names no script and no build"
            else:
                why = f"HTTP {answer.status}"
        log.warning(
            "could not read the home page of %s (%s): the proof-of-work config carries "
            "the fixed script URL and no build id until the next try in %d minutes",
            ctx.origin,
            why,
            int(self.ttl // 60),
        )
        return FALLBACK
