"""``NO_SENTINEL``: the mirror runs the sentinel for the browser, server-side.

The browser's ``POST /backend-api/sentinel/chat-requirements`` (and the 2026 site's
``…/prepare`` and ``…/finalize``) is answered here with "nothing required", the
original's fake object, so the page neither solves a proof of work nor runs
Turnstile. Meanwhile the real exchange runs for the account behind the sign-in
(the API path's classic dialect: the same browser profile, proxies, solvers and
proof-of-work limits), and its tokens are kept per account for a few minutes. The
conversation POST that follows takes them (or runs a fresh exchange) and goes up
with the real ``openai-sentinel-*`` headers; the browser's own are dropped. When
no exchange succeeds, the browser gets 403 ``Sentinel failed``, as in the original.

See docs/mirror-switches.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from accounts.pool import Credential
from upstream.auto import AutoDialect
from upstream.classic import ClassicDialect
from upstream.common import SentinelTokens
from upstream.context import TurnContext, identity_of
from upstream.dialect import Dialect
from upstream.http import BackendHttp

log = logging.getLogger(__name__)

Runner = Callable[[Credential], Awaitable[SentinelTokens]]

REQUIREMENTS = "/backend-api/sentinel/chat-requirements"
# Kept less than the requirements token's life (540 s, docs/backend-2026.md#one-turn).
TOKEN_TTL = 300.0


class SentinelFailed(Exception):
    """No sentinel tokens could be had for the account."""


def browser_answer(path: str) -> dict[str, Any] | None:
    """The "nothing required" answer for a sentinel path the browser POSTs, else None."""
    off = {"required": False, "dx": None}
    work = {"required": False, "seed": None, "difficulty": None}
    token = str(uuid.uuid4())
    if path == REQUIREMENTS:  # the original's object
        return {
            "arkose": off,
            "persona": "chatgpt-paid",
            "proofofwork": work,
            "token": token,
            "turnstile": off,
        }
    if path == REQUIREMENTS + "/prepare":
        return {
            "persona": "chatgpt-paid",
            "prepare_token": token,
            "proofofwork": work,
            "turnstile": off,
            "so": {"required": False},
        }
    if path == REQUIREMENTS + "/finalize":
        return {"persona": "chatgpt-paid", "token": token, "expire_after": int(TOKEN_TTL)}
    return None


def with_tokens(
    headers: Sequence[tuple[str, str]], tokens: SentinelTokens
) -> list[tuple[str, str]]:
    """The browser's headers with its ``openai-sentinel-*`` replaced by the real ones."""
    kept = [(k, v) for k, v in headers if not k.lower().startswith("openai-sentinel-")]
    return kept + list(tokens.headers().items())


class ServerSentinel:
    def __init__(
        self,
        run: Runner,
        *,
        ttl: float = TOKEN_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._ttl = ttl
        self._clock = clock
        self._ahead: dict[str, tuple[asyncio.Task[SentinelTokens], float]] = {}

    @staticmethod
    def _key(credential: Credential) -> str:
        return credential.entry_id or identity_of(credential.token or credential.access_token or "")

    def prefetch(self, credential: Credential) -> None:
        """Start the real exchange for the account (the browser asked for requirements)."""
        now = self._clock()
        for key, (task, started) in list(self._ahead.items()):
            if now - started > self._ttl:
                del self._ahead[key]
                task.cancel()
        key = self._key(credential)
        if key in self._ahead:
            return  # one is under way or waiting: the next turn takes it
        task = asyncio.ensure_future(self._run(credential))
        task.add_done_callback(_note_failure)
        self._ahead[key] = (task, now)

    async def tokens(self, credential: Credential) -> SentinelTokens:
        """Tokens for one conversation POST: the prefetched ones (used once), else fresh.

        Raises :class:`SentinelFailed`."""
        ahead = self._ahead.pop(self._key(credential), None)
        if ahead is not None:
            task, started = ahead
            if self._clock() - started <= self._ttl:
                with contextlib.suppress(Exception):  # logged by _note_failure
                    return await task
            task.cancel()
        try:
            return await self._run(credential)
        except Exception as e:  # noqa: BLE001 - any failure is the browser's 403
            log.warning("mirror sentinel failed for %s: %s", credential.masked, e)
            raise SentinelFailed() from None


def _note_failure(task: asyncio.Task[SentinelTokens]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("mirror sentinel prefetch failed: %s", task.exception())


def classic_of(dialect: Dialect, http: BackendHttp) -> ClassicDialect:
    """The API path's classic dialect (the single-step exchange the 2026 site still
    answers, docs/sentinel.md#tokens), or one with the same limits and solvers."""
    if isinstance(dialect, ClassicDialect):
        return dialect
    if isinstance(dialect, AutoDialect) and isinstance(dialect.older, ClassicDialect):
        return dialect.older
    limits, solvers = getattr(dialect, "limits", None), getattr(dialect, "solvers", None)
    if limits is None:
        raise ValueError(f"no sentinel limits in the {dialect.name} dialect")
    return ClassicDialect(http, limits, solvers=solvers)


def dialect_runner(
    dialect: Dialect,
    http: BackendHttp,
    context_for: Callable[[Credential, random.Random], TurnContext],
) -> Runner:
    """The real exchange for an account, as the API path runs it."""
    classic = classic_of(dialect, http)

    async def run(credential: Credential) -> SentinelTokens:
        rng = random.Random()
        return await classic.sentinel(context_for(credential, rng), rng)

    return run
