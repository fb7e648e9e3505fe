"""The token pool: selection per AUTHORIZATION code, health, and outcomes.

A client's bearer is an AUTHORIZATION code (pick from the pool), a direct
access or refresh token (optionally ``token,account_id``), or nothing (anonymous
when no codes are configured). A code whose pool has no usable entry is
anonymous too; ``allow_anonymous=False`` refuses both instead. Pool selection
(docs/original-behaviour.md#token-kinds-and-the-pool, fixing item 17 of #weaknesses-fixed-here):

* ``random_token``: a uniform choice among the eligible entries;
* otherwise round robin in the stable order of ``token.txt``, one counter per
  code; a retry within a request takes the next eligible entry after the last
  one tried, and no request ever gets the same entry twice.

Eligible means: parsed, not on the error list, not ``bad``, not cooling down,
not an expired access token, and (with a model) not rate-limited for that
model. Outcomes reported by the caller change health (:meth:`Pool.report`):

=================  ===========================================================
ok                 healthy again
unauthorized       refresh once (refresh tokens), then ``bad``
forbidden_*        cooling for ``Cooldowns.cloudflare`` / ``.unusual``
rate_limited       per (entry, model) until ``clears_in``; the whole entry if
                   no model is known. With ``enable_limit`` a request that only
                   has limited entries left is answered 429 at once
                   (docs/original-behaviour.md#accounts).
server_error       noted; the next attempt takes another entry
timeout            noted; the next attempt takes another entry
=================  ===========================================================

Use :meth:`Pool.session` for one client request and its retries.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from accounts.refresh import Refresher
from accounts.store import Health, State, Store, seed_key
from accounts.tokens import (
    Entry,
    InvalidToken,
    TokenKind,
    mask,
    normalise_line,
    parse_line,
    token_id,
)
from errors import (
    AuthenticationFailed,
    Chat2ApiError,
    InvalidRequest,
    RateLimited,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


class Outcome(enum.Enum):
    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN_CLOUDFLARE = "forbidden_cloudflare"
    FORBIDDEN_UNUSUAL = "forbidden_unusual"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    #: the account's plan cannot use the model (a free persona asking for a paid model)
    MODEL_NOT_IN_PLAN = "model_not_in_plan"
    #: it answered, but with another model than the one asked for (noted on /tokens)
    DOWNGRADED = "downgraded"


class Source(enum.Enum):
    POOL = "pool"
    DIRECT = "direct"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class Credential:
    """What one upstream attempt uses. ``access_token`` is None when anonymous."""

    source: Source
    access_token: str | None = None
    token: str | None = None  # the pool or bearer token: the RT for refresh tokens
    kind: TokenKind | None = None
    account_id: str | None = None
    entry_id: str | None = None  # key of health and limits; safe to log

    @property
    def masked(self) -> str:
        return mask(self.token) if self.token else "anonymous"

    def __repr__(self) -> str:
        return f"Credential({self.source.value}, {self.masked}, id={self.entry_id})"


ANONYMOUS = Credential(source=Source.ANONYMOUS)


@dataclass(frozen=True, kw_only=True, slots=True)
class Cooldowns:
    """Seconds an entry rests after each kind of failure."""

    cloudflare: float = 300.0
    unusual: float = 1800.0
    rate_limit: float = 60.0  # a 429 without clears_in
    refresh_failure: float = 60.0  # the OAuth endpoint failed (not a dead token)


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenView:
    """One entry as the admin API shows it: masked, never the token itself."""

    id: str
    token: str
    kind: str
    account_id: str | None
    state: str
    reason: str | None
    until: float | None
    last_error: str | None
    last_used: float | None
    expires: float | None
    limits: dict[str, float]
    #: The last x-codex-* limit headers seen for this account (upstream/codex.py).
    codex: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token": self.token,
            "kind": self.kind,
            "account_id": self.account_id,
            "state": self.state,
            "reason": self.reason,
            "until": self.until,
            "last_error": self.last_error,
            "last_used": self.last_used,
            "expires": self.expires,
            "limits": self.limits,
            "codex": self.codex,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejected:
    line: str  # masked
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AddResult:
    added: list[str]  # entry ids
    rejected: list[Rejected]
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class _Target:
    code_key: str | None = None  # pool
    entry: Entry | None = None  # direct


class Pool:
    """The shared token pool; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        refresher: Refresher | None = None,
        codes: Sequence[str] = (),
        random_token: bool = True,
        retry_times: int = 3,
        enable_limit: bool = True,
        allow_anonymous: bool = True,
        cooldowns: Cooldowns | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.refresher = refresher
        self.codes = codes
        self.random_token = random_token
        self.retry_times = retry_times
        self.enable_limit = enable_limit
        self.allow_anonymous = allow_anonymous
        self.cooldowns = cooldowns or Cooldowns()
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self._models: set[str] = set()  # slugs seen in 429s, for the admin view
        # entry id -> the last Codex limit headers seen (per instance, for the admin view)
        self.codex_status: dict[str, dict[str, Any]] = {}

    @property
    def codes(self) -> Sequence[str]:
        return self._codes

    @codes.setter
    def codes(self, codes: Sequence[str]) -> None:
        self._codes = tuple(c for c in codes if c)
        self._code_bytes = tuple(c.encode() for c in self._codes)

    def match_code(self, bearer: str) -> str | None:
        """The code equal to ``bearer``, compared in constant time against all codes."""
        given = bearer.encode()
        found: str | None = None
        for code, raw in zip(self._codes, self._code_bytes, strict=True):
            if hmac.compare_digest(raw, given):  # no early exit: every code is compared
                found = code
        return found

    # -- one request -------------------------------------------------------------
    def session(
        self,
        bearer: str | None,
        header_account_id: str | None = None,
        body_account_id: str | None = None,
        *,
        model: str | None = None,
        seeds_only: bool = False,
    ) -> PoolSession:
        """``seeds_only``: the bearer must be a mirror seed (the original's API with
        ``AUTO_SEED=false``); codes and tokens are refused."""
        return PoolSession(
            self, bearer or "", header_account_id, body_account_id, model, seeds_only
        )

    async def resolve(
        self,
        bearer: str | None,
        header_account_id: str | None = None,
        body_account_id: str | None = None,
        *,
        model: str | None = None,
    ) -> Credential:
        """The credential for a request's first attempt; raises AuthenticationFailed,
        InvalidRequest (bad account id) or RateLimited (enable_limit)."""
        cred = await self.session(bearer, header_account_id, body_account_id, model=model).next()
        assert cred is not None  # a first attempt never runs out
        return cred

    async def check_key(
        self, bearer: str | None, *, refresh: bool, seeds_only: bool = False
    ) -> None:
        """Raise AuthenticationFailed for a key no request could use, before any work
        is done for it: a missing key where one is needed, a string that is neither a
        code nor a token, an expired access token; with ``refresh``, a refresh token
        the OAuth server rejects (its access token is cached for the request itself).
        An unexpired access token is the backend's to judge."""
        if seeds_only:  # AUTO_SEED=false: the key must be a mirror seed
            await self._seed_target(bearer or "")
            return
        target = self._target(bearer or "")
        entry = target.entry if target is not None else None
        if entry is None:
            return
        if entry.kind is TokenKind.ACCESS:
            if entry.exp is not None and entry.exp <= self.clock():
                raise AuthenticationFailed("The access token has expired.")
        elif self.refresher is None:
            raise AuthenticationFailed("Refresh tokens are not accepted here.")
        elif refresh:
            await self.refresher.access_token(entry.token)

    async def _seed_target(self, bearer: str) -> _Target:
        """The account a mirror seed stands for; 401 ``Invalid Seed`` as the original."""
        record = await self.store.seed(seed_key(bearer.strip())) if bearer.strip() else None
        line: str | None = None
        if record is not None and record.token:
            line = record.token
        elif record is not None and record.entry_id:
            for candidate in await self.store.tokens():
                with contextlib.suppress(InvalidToken):
                    if parse_line(candidate).id == record.entry_id:
                        line = candidate
                        break
        if line is None:
            raise AuthenticationFailed("Invalid Seed")
        try:
            return _Target(entry=parse_line(line))
        except InvalidToken:
            raise AuthenticationFailed("Invalid Seed") from None

    def _target(self, bearer: str) -> _Target | None:
        bearer = bearer.strip()
        code = self.match_code(bearer)
        if code is not None:
            return _Target(code_key="rr:" + token_id(code))
        if not bearer:
            if self._codes or not self.allow_anonymous:
                raise AuthenticationFailed("Missing API key (an AUTHORIZATION code or a token).")
            return None
        try:
            return _Target(entry=parse_line(bearer))
        except InvalidToken as exc:
            raise AuthenticationFailed(f"Invalid API key: {exc}.") from None

    @staticmethod
    def _account_id(*candidates: str | None) -> str | None:
        for value in candidates:
            if value:
                if not _ACCOUNT_ID.fullmatch(value):
                    raise InvalidRequest("Invalid ChatGPT account id.", param="ChatGPT-Account-ID")
                return value
        return None

    async def _direct(self, entry: Entry, account_id: str | None, model: str | None) -> Credential:
        now = self.clock()
        if self.enable_limit and model:
            until = (await self.store.limits(model)).get(entry.id)
            if until is not None:
                raise _limited(until - now)
        if entry.kind is TokenKind.ACCESS:
            if entry.exp is not None and entry.exp <= now:
                raise AuthenticationFailed("The access token has expired.")
            at = entry.token
        else:
            if self.refresher is None:
                raise AuthenticationFailed("Refresh tokens are not accepted here.")
            at = await self.refresher.access_token(entry.token)
        return Credential(
            source=Source.DIRECT,
            access_token=at,
            token=entry.token,
            kind=entry.kind,
            account_id=account_id or entry.account_id,
            entry_id=entry.id,
        )

    async def _pooled(
        self,
        code_key: str,
        account_id: str | None,
        model: str | None,
        exclude: set[str],
        after: str | None,
    ) -> Credential | None:
        """A pool credential; ANONYMOUS if the pool has no usable entry (with
        ``allow_anonymous``); None if a retry has nothing left: a retry never falls
        back to anonymous use. Dead refresh tokens met on the way are marked."""
        retry = bool(exclude)
        exclude = set(exclude)
        while True:
            entry = await self._pick(code_key, model, exclude, after, retry=retry)
            if entry is None or (entry is _EMPTY and retry):
                return None
            if entry is _EMPTY:
                if not self.allow_anonymous:
                    raise UpstreamUnavailable(
                        "The token pool has no usable account, and anonymous use is off."
                    )
                return ANONYMOUS
            at = entry.token
            if entry.kind is TokenKind.REFRESH:
                assert self.refresher is not None
                try:
                    at = await self.refresher.access_token(entry.token)
                except AuthenticationFailed:
                    await self._mark(entry.id, State.BAD, "refresh token rejected")
                    exclude.add(entry.id)
                    continue
                except Chat2ApiError:
                    await self._cool(entry.id, self.cooldowns.refresh_failure, "refresh failed")
                    exclude.add(entry.id)
                    continue
            await self.store.touch(entry.id, self.clock())
            return Credential(
                source=Source.POOL,
                access_token=at,
                token=entry.token,
                kind=entry.kind,
                account_id=account_id or entry.account_id,
                entry_id=entry.id,
            )

    async def _entries(self) -> list[Entry]:
        out = []
        for line in await self.store.tokens():
            try:
                out.append(parse_line(line))
            except InvalidToken:
                continue  # kept in token.txt as written; never picked
        return out

    def _usable(self, entry: Entry, health: Health | None, errors: set[str], now: float) -> bool:
        if entry.token in errors or (health is not None and health.state is State.BAD):
            return False
        if entry.kind is TokenKind.REFRESH:
            return self.refresher is not None
        return entry.exp is None or entry.exp > now

    async def _pick(
        self,
        code_key: str,
        model: str | None,
        exclude: set[str],
        after: str | None,
        *,
        retry: bool,
    ) -> Entry | None:
        """An eligible entry; _EMPTY if none is usable at all; None if a retry has
        nothing left. A first attempt with nothing left raises instead."""
        now = self.clock()
        entries = await self._entries()
        health = await self.store.health()
        errors = set(await self.store.errors())
        usable = [e for e in entries if self._usable(e, health.get(e.id), errors, now)]
        if not usable:
            return _EMPTY
        candidates, cooling = [], []
        for e in usable:
            if e.id in exclude:
                continue
            h = health.get(e.id)
            if h is not None and h.effective(now) is State.COOLING:
                cooling.append(h.until or now)
            else:
                candidates.append(e)
        if model and candidates:
            limits = await self.store.limits(model)
            free = [e for e in candidates if e.id not in limits]
            if not free and self.enable_limit:
                if retry:
                    return None
                raise _limited(min(limits[e.id] for e in candidates) - now)
            candidates = free or candidates
        if not candidates:
            if retry:
                return None
            if not cooling:  # every usable entry failed to refresh just now
                raise UpstreamUnavailable("No pool account could be refreshed.")
            raise _limited(min(cooling) - now, "All pool accounts are cooling down.")
        if self.random_token:
            return self.rng.choice(candidates)
        if after is not None:
            order = {e.id: i for i, e in enumerate(entries)}
            start = order.get(after, -1)
            later = [e for e in candidates if order[e.id] > start]
            return (later or candidates)[0]
        return candidates[await self.store.next_counter(code_key) % len(candidates)]

    # -- outcomes -----------------------------------------------------------------
    async def report(
        self,
        cred: Credential,
        outcome: Outcome,
        *,
        model: str | None = None,
        clears_in: float | None = None,
        detail: str | None = None,
    ) -> bool:
        """Apply an attempt's outcome. True when the same credential was refreshed
        after a 401 and may be tried once more (direct tokens only need this)."""
        entry_id = cred.entry_id
        if cred.source is Source.ANONYMOUS or entry_id is None:
            return False
        now = self.clock()
        pooled = cred.source is Source.POOL
        h = (await self.store.health()).get(entry_id, Health())
        if outcome is Outcome.OK:
            if h.state is not State.HEALTHY or h.unauth_at or h.reason:
                await self.store.set_health(entry_id, Health(last_used=now))
            return False
        if outcome is Outcome.UNAUTHORIZED:
            return await self._unauthorized(cred, h, pooled)
        if outcome is Outcome.RATE_LIMITED:
            seconds = clears_in if clears_in and clears_in > 0 else self.cooldowns.rate_limit
            if model:
                self._models.add(model)
                await self.store.set_limit(model, entry_id, now + seconds)
                await self.store.touch(entry_id, now, f"429 for {model}")
            elif pooled:
                await self._cool(entry_id, seconds, "rate limited")
            return False
        if outcome is Outcome.DOWNGRADED:
            # It works (healthy), with a note for the /tokens page.
            note = detail or "answered with another model"
            await self.store.set_health(entry_id, Health(last_used=now, last_error=note))
            return False
        if outcome is Outcome.MODEL_NOT_IN_PLAN:
            # The account is fine, only not for this model: the session moves on.
            await self.store.touch(entry_id, now, f"its plan cannot use {model}")
            return False
        if outcome is Outcome.FORBIDDEN_CLOUDFLARE and pooled:
            await self._cool(entry_id, self.cooldowns.cloudflare, "403 cloudflare")
        elif outcome is Outcome.FORBIDDEN_UNUSUAL and pooled:
            await self._cool(entry_id, self.cooldowns.unusual, "403 unusual activity")
        else:
            await self.store.touch(entry_id, now, detail or outcome.value)
        return False

    async def _unauthorized(self, cred: Credential, h: Health, pooled: bool) -> bool:
        entry_id = cred.entry_id
        assert entry_id is not None and cred.token is not None
        at_id = token_id(cred.access_token or "")
        if cred.kind is TokenKind.REFRESH and self.refresher and h.unauth_at != at_id:
            try:
                fresh = await self.refresher.access_token(cred.token, stale=cred.access_token)
            except AuthenticationFailed:
                if pooled:
                    await self._mark(entry_id, State.BAD, "refresh token rejected")
                return False
            except Chat2ApiError:
                if pooled:
                    await self._cool(entry_id, self.cooldowns.refresh_failure, "refresh failed")
                return False
            if pooled:
                await self.store.set_health(
                    entry_id, h.with_(unauth_at=token_id(fresh), last_error="401 unauthorized")
                )
            return fresh != cred.access_token
        if pooled:
            await self._mark(entry_id, State.BAD, "401 unauthorized")
        return False

    async def _mark(
        self, entry_id: str, state: State, reason: str, until: float | None = None
    ) -> None:
        h = (await self.store.health()).get(entry_id, Health())
        log.warning("pool entry %s is now %s: %s", entry_id, state.value, reason)
        await self.store.set_health(
            entry_id, h.with_(state=state, reason=reason, until=until, last_error=reason)
        )

    async def _cool(self, entry_id: str, seconds: float, reason: str) -> None:
        await self._mark(entry_id, State.COOLING, reason, self.clock() + seconds)

    # -- per-account memory for the Codex backend (service/responses.py) ------------
    def note_codex(self, entry_id: str | None, limits: dict[str, Any] | None) -> None:
        """Keep the x-codex-* limits last seen for an account, for ``/tokens``."""
        if entry_id is not None and limits:
            self.codex_status[entry_id] = limits

    async def remember(self, key: str, entry_id: str | None, seconds: float, note: str) -> None:
        """Remember something about an account for ``seconds`` under ``key`` (kept with
        the rate-limit memory and shown among its limits on ``/tokens``)."""
        if entry_id is None:
            return
        now = self.clock()
        self._models.add(key)
        await self.store.set_limit(key, entry_id, now + seconds)
        await self.store.touch(entry_id, now, note)

    async def remembered(self, key: str, entry_id: str | None) -> bool:
        return entry_id is not None and entry_id in await self.store.limits(key)

    # -- management ----------------------------------------------------------------
    async def add(self, lines: Iterable[str]) -> AddResult:
        """Add lines (blank and ``#`` lines skipped); say which were rejected and why."""
        errors = set(await self.store.errors())
        good: list[Entry] = []
        rejected: list[Rejected] = []
        for raw in lines:
            line = normalise_line(raw)
            if not line or line.startswith("#"):
                continue
            try:
                entry = parse_line(line)
            except InvalidToken as exc:
                rejected.append(Rejected(line=mask(line), reason=str(exc)))
                continue
            if entry.token in errors:
                rejected.append(Rejected(line=mask(line), reason="on the error list"))
            else:
                good.append(entry)
        added = set(await self.store.add_tokens([e.line for e in good]))
        ids = []
        for e in good:
            if e.line in added:
                ids.append(e.id)
                added.discard(e.line)
            else:
                rejected.append(Rejected(line=mask(e.line), reason="duplicate"))
        return AddResult(added=ids, rejected=rejected, count=len(await self.store.tokens()))

    async def remove(self, entry_id: str) -> bool:
        lines = [x for x in await self.store.tokens() if token_id(x) == entry_id]
        return await self.store.remove_tokens(lines) > 0

    async def clear(self) -> None:
        """Empty the pool, its health and the error list (the original kept errors,
        docs/original-behaviour.md#weaknesses-fixed-here)."""
        await self.store.clear_tokens()
        await self.store.clear_errors()

    async def views(self) -> list[TokenView]:
        now = self.clock()
        health = await self.store.health()
        errors = set(await self.store.errors())
        limits = {m: await self.store.limits(m) for m in sorted(self._models)}
        out = []
        for line in await self.store.tokens():
            h = health.get(token_id(line), Health())
            try:
                e = parse_line(line)
            except InvalidToken as exc:
                out.append(_view(token_id(line), mask(line), "invalid", None, h, now, str(exc)))
                continue
            reason = None
            if e.token in errors:
                reason = "on the error list"
            elif e.exp is not None and e.exp <= now:
                reason = "access token expired"
            view = _view(e.id, e.masked, e.kind.value, e.account_id, h, now, reason, e.exp)
            view = replace(view, codex=self.codex_status.get(e.id))
            out.append(view)
            for m, table in limits.items():
                if e.id in table:
                    view.limits[m] = table[e.id]
        return out

    async def error_list(self) -> list[dict[str, str]]:
        return [{"id": token_id(t), "token": mask(t)} for t in await self.store.errors()]


class PoolSession:
    """One client request: its first credential and its retries
    (docs/original-behaviour.md#weaknesses-fixed-here, 13).

    ``next()`` gives at most ``1 + retry_times`` credentials, never the same pool
    entry twice; None means stop and answer with the last upstream error. Call
    ``report()`` after each attempt. The caller retries only while no byte has
    reached the client.
    """

    def __init__(
        self,
        pool: Pool,
        bearer: str,
        header_account_id: str | None,
        body_account_id: str | None,
        model: str | None,
        seeds_only: bool = False,
    ) -> None:
        self.pool = pool
        self.model = model
        self._bearer = bearer
        self._seeds_only = seeds_only
        self._accounts = (body_account_id, header_account_id)
        self.attempts = 0
        self.tried: list[str] = []
        self.last: Credential | None = None
        self._again = False  # a direct token refreshed after a 401
        self._refreshed = False

    async def next(self) -> Credential | None:
        pool = self.pool
        if self.attempts > pool.retry_times:
            return None
        target = (
            await pool._seed_target(self._bearer)
            if self._seeds_only
            else pool._target(self._bearer)
        )
        account_id = pool._account_id(*self._accounts)
        cred: Credential | None
        if target is None:
            cred = ANONYMOUS
        elif target.entry is not None:
            if self.last is not None and not self._again:
                return None  # the same failure again would be pointless
            self._again = False
            cred = await pool._direct(target.entry, account_id, self.model)
        elif self.last is not None and self.last.source is Source.ANONYMOUS:
            cred = ANONYMOUS
        else:
            assert target.code_key is not None
            after = self.tried[-1] if self.tried else None
            try:
                cred = await pool._pooled(
                    target.code_key, account_id, self.model, set(self.tried), after
                )
            except RateLimited:
                if self.last is None:
                    raise
                cred = None
        if cred is None:
            return None
        self.attempts += 1
        self.last = cred
        if cred.entry_id is not None:
            self.tried.append(cred.entry_id)
        return cred

    async def report(
        self, outcome: Outcome, *, clears_in: float | None = None, detail: str | None = None
    ) -> None:
        if self.last is None:
            raise RuntimeError("report() before next()")
        again = await self.pool.report(
            self.last, outcome, model=self.model, clears_in=clears_in, detail=detail
        )
        # Refresh once, then give up: a direct token gets one more try after a 401.
        self._again = again and self.last.source is Source.DIRECT and not self._refreshed
        self._refreshed = self._refreshed or self._again


_EMPTY = Entry(token="", account_id=None, kind=TokenKind.ACCESS)


def _limited(seconds: float, message: str | None = None) -> RateLimited:
    retry_after = max(1.0, seconds)
    if message is None:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + retry_after))
        message = (
            "Request limit exceeded. You can continue with the default model now, "
            f"or try again after {until}"
        )
    return RateLimited(message, retry_after=retry_after)


def _view(
    entry_id: str,
    masked: str,
    kind: str,
    account_id: str | None,
    h: Health,
    now: float,
    reason: str | None = None,
    expires: float | None = None,
) -> TokenView:
    state = h.effective(now)
    if reason is not None:
        state = State.BAD
    return TokenView(
        id=entry_id,
        token=masked,
        kind=kind,
        account_id=account_id,
        state=state.value,
        reason=reason or (h.reason if state is not State.HEALTHY else None),
        until=h.until if state is State.COOLING else None,
        last_error=h.last_error,
        last_used=h.last_used,
        expires=expires,
        limits={},
    )


__all__ = [
    "ANONYMOUS",
    "AddResult",
    "Cooldowns",
    "Credential",
    "Outcome",
    "Pool",
    "PoolSession",
    "Rejected",
    "Source",
    "TokenView",
]
