"""Refresh token → access token, with single flight, rotation and a schedule.

The refresh call is ``POST token_url`` with ``{"client_id", "grant_type":
"refresh_token", "redirect_uri", "refresh_token"}`` (docs/backend-protocol.md#accounts-and-refresh).
Refresh tokens may be single-use and rotating
(docs/backend-2026.md#tokens): a rotated ``refresh_token`` in the answer replaces
the old one in the pool and in ``token.txt``, and the old one becomes an alias
so that a client using it directly as its bearer keeps working. Only one
refresh per refresh token runs at a time, however many requests wait for it:
in-process through a shared task, across instances through the store's lock.

Only pool tokens go on the error list (``error_token.txt``): a dead refresh token
someone sent as their own key or mirror sign-in is remembered in memory for a day
(:data:`DEAD_MEMORY`), so it is not posted again, and never written anywhere.

The HTTP call is injected (``post_json``), so this module does no I/O itself;
:func:`curl_post_json` is a ready implementation on curl_cffi.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from accounts.store import CachedAccess, Store
from accounts.tokens import InvalidToken, TokenKind, jwt_exp, mask, parse_line, token_id
from errors import AuthenticationFailed, Chat2ApiError, UpstreamError

log = logging.getLogger(__name__)

#: The ChatGPT iOS app's client (docs/original-behaviour.md#accounts).
AUTH0_TOKEN_URL = "https://auth0.openai.com/oauth/token"
AUTH_TOKEN_URL = (
    "https://auth.openai.com/oauth/token"  # the newer host (docs/backend-2026.md#tokens)
)
IOS_CLIENT_ID = "pdlLIX2Y72MIl2rhLhTE9VV9bN905kBh"
IOS_REDIRECT_URI = "com.openai.chat://auth0.openai.com/ios/com.openai.chat/callback"

#: OAuth error codes meaning the refresh token is dead (docs/backend-2026.md#tokens).
DEAD_CODES = (
    "invalid_grant",
    "access_denied",
    "refresh_token_reused",
    "refresh_token_expired",
    "refresh_token_invalidated",
)

#: Dead refresh tokens from outside the pool kept in memory: how many, how long.
DEAD_MEMORY = 4096
DEAD_FOR = 86400.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


PostJson = Callable[[str, Mapping[str, Any], float], Awaitable[tuple[int, dict[str, Any]]]]
"""``await post_json(url, json_body, timeout) -> (status, parsed JSON body)``.

A body that is not a JSON object comes back as ``{"_raw": <first 500 chars>}``;
a transport failure raises (any exception)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RefreshSummary:
    ok: int = 0
    dead: int = 0
    failed: int = 0


def _dead_code(body: Mapping[str, Any]) -> str | None:
    """The dead-token code in an OAuth error body, read as codex does."""
    err = body.get("error")
    candidates = [err.get("code"), err.get("type")] if isinstance(err, dict) else [err]
    candidates.append(body.get("code"))
    for value in candidates:
        if isinstance(value, str) and value in DEAD_CODES:
            return value
    text = str(body)  # the original matches the words anywhere in the body
    return next((code for code in DEAD_CODES if code in text), None)


class Refresher:
    """Turns refresh tokens into access tokens; see the module docstring."""

    def __init__(
        self,
        store: Store,
        post_json: PostJson,
        *,
        token_url: str = AUTH0_TOKEN_URL,
        client_id: str = IOS_CLIENT_ID,
        redirect_uri: str | None = IOS_REDIRECT_URI,
        margin: float = 3600.0,
        timeout: float = 15.0,
        pause: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.post_json = post_json
        self.token_url = token_url
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.margin = margin
        self.timeout = timeout
        self.pause = pause
        self._clock = clock
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._dead: OrderedDict[str, float] = OrderedDict()  # digest → when (not pool)

    async def current(self, refresh_token: str) -> str:
        """Follow rotation aliases to the newest refresh token."""
        for _ in range(16):
            cached = await self.store.cached_access(refresh_token)
            if cached is None or cached.rotated_to is None:
                break
            refresh_token = cached.rotated_to
        return refresh_token

    async def access_token(
        self, refresh_token: str, *, force: bool = False, stale: str | None = None
    ) -> str:
        """An access token for this refresh token, cached until ``exp - margin``.

        ``force`` skips the cache; ``stale`` names an access token known to be
        rejected (a 401), so a cached copy of it is not returned. Raises
        AuthenticationFailed for a dead refresh token, UpstreamError otherwise.
        """
        refresh_token = await self.current(refresh_token)
        if not force:
            cached = await self.store.cached_access(refresh_token)
            if cached and cached.valid(self._clock(), self.margin) and cached.token != stale:
                assert cached.token is not None
                return cached.token
        if refresh_token in await self.store.errors():
            raise AuthenticationFailed("This refresh token was rejected earlier (error list).")
        if self._known_dead(refresh_token):
            raise AuthenticationFailed("This refresh token was rejected earlier.")
        task = self._inflight.get(refresh_token)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._refresh(refresh_token, force=force, stale=stale)
            )
            self._inflight[refresh_token] = task
            task.add_done_callback(lambda t: self._done(refresh_token, t))
        return await asyncio.shield(task)

    async def needs_refresh(self, refresh_token: str) -> bool:
        """Whether :meth:`access_token` would call the token endpoint now (nothing
        cached and valid, and not known to be dead)."""
        refresh_token = await self.current(refresh_token)
        cached = await self.store.cached_access(refresh_token)
        if cached and cached.valid(self._clock(), self.margin):
            return False
        if self._known_dead(refresh_token):
            return False
        return refresh_token not in await self.store.errors()

    def _known_dead(self, refresh_token: str) -> bool:
        key = _digest(refresh_token)
        when = self._dead.get(key)
        if when is None:
            return False
        if self._clock() - when > DEAD_FOR:
            del self._dead[key]
            return False
        return True

    async def _mark_dead(self, rt: str, code: str) -> None:
        pooled = False
        for line in await self.store.tokens():
            try:
                pooled = parse_line(line).token == rt
            except InvalidToken:
                continue
            if pooled:
                break
        if pooled:
            await self.store.add_error(rt)
            log.warning("refresh token %s is dead (%s); added to the error list", mask(rt), code)
            return
        self._dead[_digest(rt)] = self._clock()
        self._dead.move_to_end(_digest(rt))
        while len(self._dead) > DEAD_MEMORY:
            self._dead.popitem(last=False)
        log.info("refresh token %s (not in the pool) is dead (%s)", mask(rt), code)

    def _done(self, refresh_token: str, task: asyncio.Task[str]) -> None:
        self._inflight.pop(refresh_token, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so an unawaited failure is not reported twice

    async def _refresh(self, rt: str, *, force: bool, stale: str | None) -> str:
        async with self.store.lock("refresh:" + token_id(rt)):
            # Another waiter (or instance) may have refreshed while we queued.
            latest = await self.current(rt)
            cached = await self.store.cached_access(latest)
            if (
                cached
                and cached.valid(self._clock(), self.margin)
                and cached.token != stale
                and (not force or latest != rt)  # a rotated token was refreshed meanwhile
            ):
                assert cached.token is not None
                return cached.token
            return await self._post(latest)

    async def _post(self, rt: str) -> str:
        body: dict[str, Any] = {
            "client_id": self.client_id,
            "grant_type": "refresh_token",
            "refresh_token": rt,
        }
        if self.redirect_uri:
            body["redirect_uri"] = self.redirect_uri
        try:
            status, answer = await self.post_json(self.token_url, body, self.timeout)
        except Exception as exc:
            log.warning("refresh of %s failed: %s", mask(rt), type(exc).__name__)
            raise UpstreamError("Failed to refresh access_token.") from exc
        at = answer.get("access_token") if status == 200 else None
        if not isinstance(at, str) or not at:
            code = _dead_code(answer) if status != 200 else None
            if code is not None:
                await self._mark_dead(rt, code)
                raise AuthenticationFailed(f"The refresh token was rejected ({code}).")
            log.warning("refresh of %s failed with HTTP %s", mask(rt), status)
            raise UpstreamError("Failed to refresh access_token.")
        now = self._clock()
        expires = jwt_exp(at)
        if expires is None and isinstance(answer.get("expires_in"), (int, float)):
            expires = now + float(answer["expires_in"])
        cached = CachedAccess(token=at, timestamp=now, expires=expires)
        new_rt = answer.get("refresh_token")
        if isinstance(new_rt, str) and new_rt and new_rt != rt:
            # Durable before anything else: the old refresh token is now spent.
            await self.store.put_access(new_rt, cached, rotated_from=rt)
            await self.store.replace_token(rt, new_rt)
            log.info("refresh token %s rotated to %s", mask(rt), mask(new_rt))
        else:
            await self.store.put_access(rt, cached)
        return at

    async def refresh_all(self, force: bool = False) -> RefreshSummary:
        """Refresh every usable pool refresh token, one after another
        (docs/original-behaviour.md#accounts)."""
        ok = dead = failed = 0
        errors = set(await self.store.errors())
        seen: set[str] = set()
        for line in await self.store.tokens():
            try:
                entry = parse_line(line)
            except InvalidToken:
                continue
            if entry.kind is not TokenKind.REFRESH or entry.token in errors | seen:
                continue
            seen.add(entry.token)
            try:
                await self.access_token(entry.token, force=force)
                ok += 1
            except AuthenticationFailed:
                dead += 1
            except Chat2ApiError:
                failed += 1
            if self.pause:
                await asyncio.sleep(self.pause)
        log.info("refresh of all tokens: %d ok, %d dead, %d failed", ok, dead, failed)
        return RefreshSummary(ok=ok, dead=dead, failed=failed)


# -- the schedule -----------------------------------------------------------------

_SCHEDULE = re.compile(
    r"\s*(?:every\s+)?(?:(\d+)\s*(?:d|days?)\s*)?(?:@|at\s+)?\s*(\d{1,2}):(\d{2})\s*", re.I
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """Every ``days`` days at ``hour:minute`` local time.

    The days are counted on the calendar (date ordinal divisible by ``days``),
    so restarts do not shift the runs. Default: every 2 days at 03:00
    (docs/original-behaviour.md#accounts).
    """

    days: int = 2
    hour: int = 3
    minute: int = 0

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``"03:00"``, ``"2d@03:00"``, ``"every 2 days at 03:00"``; raises ValueError."""
        m = _SCHEDULE.fullmatch(text)
        if not m:
            raise ValueError(f"expected 'every N days at HH:MM', got {text!r}")
        days, hour, minute = int(m.group(1) or 1), int(m.group(2)), int(m.group(3))
        if days < 1 or hour > 23 or minute > 59:
            raise ValueError(f"out of range: {text!r}")
        return cls(days=days, hour=hour, minute=minute)

    def next_run(self, after: dt.datetime) -> dt.datetime:
        """The first run strictly after ``after`` (aware or naive, kept as given)."""
        day = after.date()
        while True:
            if day.toordinal() % self.days == 0:
                at = dt.datetime.combine(day, dt.time(self.hour, self.minute), after.tzinfo)
                if at > after:
                    return at
            day += dt.timedelta(days=1)


async def run_schedule(
    refresher: Refresher,
    schedule: Schedule,
    *,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Forever: sleep until the next run, then force a refresh of all tokens.

    Start it as a task (``asyncio.create_task``) and cancel it on shutdown.
    """
    while True:
        current = now()
        await sleep(max(0.0, (schedule.next_run(current) - current).total_seconds()))
        try:
            await refresher.refresh_all(force=True)
        except Exception:  # a bad night must not end the schedule
            log.exception("scheduled refresh failed")


async def _startup_refresh(refresher: Refresher) -> RefreshSummary:
    try:
        return await refresher.refresh_all()
    except Chat2ApiError as exc:  # e.g. the shared store is unreachable at start-up
        log.warning("start-up refresh of all tokens skipped: %s", exc)
        return RefreshSummary()


def start_background(
    refresher: Refresher, schedule: Schedule | None = None
) -> list[asyncio.Task[Any]]:
    """The start-up refresh of all (not forced) and, with ``SCHEDULED_REFRESH``,
    the scheduled forced one (docs/original-behaviour.md#accounts). Keep the tasks; cancel them on
    shutdown."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = [loop.create_task(_startup_refresh(refresher))]
    if schedule is not None:
        tasks.append(loop.create_task(run_schedule(refresher, schedule)))
    return tasks


def curl_post_json(*, proxy: str | None = None, impersonate: str = "chrome") -> PostJson:
    """A :data:`PostJson` on curl_cffi (no environment proxies unless ``proxy``)."""

    async def post_json(
        url: str, body: Mapping[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]:
        from curl_cffi.requests import AsyncSession

        origin = "https://" + url.split("/")[2]
        headers = {
            "accept": "*/*",
            "accept-language": "en-US,en;q=0.9",
            "content-type": "application/json",
            "origin": origin,
        }
        async with AsyncSession(trust_env=False, impersonate=impersonate, proxy=proxy) as session:
            resp = await session.post(url, json=dict(body), headers=headers, timeout=timeout)
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                data = {"_raw": resp.text[:500]}
            return resp.status_code, data

    return post_json
