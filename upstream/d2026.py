"""The 2026 dialect: two-step sentinel, FNV-1a proofs, conduit, ``/f/conversation``, resume.

One turn (``docs/backend-2026.md#one-turn``):

1. ``POST {base}/sentinel/chat-requirements/prepare`` ``{"p"}`` → ``prepare_token``
   and the challenges;
2. solve the proof of work (FNV-1a by default, ``POW_ALGORITHM``);
3. ``POST …/finalize`` ``{prepare_token, proofofwork?, turnstile?}``, keys left out
   when not required → the chat-requirements ``token``. A fresh pair for
   every conversation: a report saw 403 for a reused one, and the finalized
   material is valid for about 540 s anyway;
4. ``POST {base}/f/conversation/prepare`` with the body minus messages and an empty
   ``x-conduit-token`` → ``conduit_token`` (``#conduit-prepare``);
5. ``POST {base}/f/conversation`` with the conduit token, the sentinel headers and
   ``x-oai-turn-trace-id`` (``#headers``).

The stream starts with a ``resume_conversation_token``; :meth:`Dialect2026.resume`
re-opens a broken stream with ``POST {base}/f/conversation/resume``
``{conversation_id, offset}`` (``#resume``), and reads a handed-off turn on from offset 0
(docs/stream-handoff.md). Turnstile and the session observer (SO) are
not solved (they change too often): when the site requires them, the
turn goes on without, as the classic dialect always has.
"""

from __future__ import annotations

import functools
import logging
import random
import uuid
from typing import Any

import pow
from errors import Chat2ApiError, UpstreamError
from upstream.common import Limits, SentinelTokens, open_event_stream, solve_challenge
from upstream.context import TurnContext
from upstream.dialect import DialectNotSpoken, ResumeRefused, Turn, TurnBodies, check_persona
from upstream.failures import classify
from upstream.http import BackendHttp, HttpAnswer, StreamAnswer
from upstream.site import SitePage, SitePages
from upstream.solvers import ChallengeSolvers

log = logging.getLogger(__name__)

#: Statuses after which the page tries the resume call again (docs/backend-2026.md#resume);
#: any other refusal ends resuming.
RESUME_RETRY_STATUSES = frozenset({408, 409, 425, 429, 502, 504})
_SESSION_NS = uuid.UUID("0b6f5d4e-2a51-4c1e-9f3a-7c28e0d5a911")


class Dialect2026:
    name = "2026"

    def __init__(
        self,
        http: BackendHttp,
        limits: Limits,
        *,
        conversation_only: bool = False,
        solvers: ChallengeSolvers | None = None,
        site: SitePages | None = None,
    ):
        self.http = http
        self.limits = limits
        self.conversation_only = conversation_only
        self.solvers = solvers or ChallengeSolvers(http)
        self.algorithm: pow.Algorithm = limits.pow_algorithm or "fnv1a"
        self.site = site or SitePages(http)
        # One simulated page load per device for this process: oai-session-id.
        self._boot = uuid.uuid4().hex
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ the turn

    async def open_conversation(
        self, ctx: TurnContext, bodies: TurnBodies, rng: random.Random
    ) -> Turn:
        """Sentinel, conduit and conversation call; the stream once it is a 200."""
        trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        # The page's data-build: oai-client-version and config element 6 (docs/site-page.md).
        page = await self.site.page(ctx)
        build = page.build
        tokens = None if self.conversation_only else await self.sentinel(ctx, rng, page)
        if tokens is not None:
            check_persona(bodies, tokens.persona)
        conduit = await self.conduit(ctx, bodies, trace_id, build)
        headers = self._headers(ctx, "/f/conversation", trace_id, build)
        headers["x-conduit-token"] = conduit
        if tokens is not None:
            # Only the requirements token: the page sends it or the prepare token, never
            # both (docs/backend-2026.md#headers).
            headers.update(tokens.headers())
        stream = await open_event_stream(
            self.http,
            ctx,
            f"{ctx.base}/f/conversation",
            headers=headers,
            body=bodies.conversation("2026", "success"),
            limits=self.limits,
            what="conversation",
        )
        resumer = functools.partial(self.resume, ctx, trace_id=trace_id, build=build)
        return Turn(stream=stream, wire="2026", resumer=resumer)

    async def resume(
        self,
        ctx: TurnContext,
        *,
        trace_id: str,
        build: str | None,
        conversation_id: str,
        offset: int,
        token: str,
    ) -> StreamAnswer:
        """The rest of a turn's stream after its first ``offset`` counted events
        (docs/backend-2026.md#resume).

        A read: the prompt is never posted again. Raises :class:`ResumeRefused`
        when the backend will not serve it, another error when trying again may help.
        """
        headers = self._headers(ctx, "/f/conversation/resume", trace_id, build)
        headers["x-conduit-token"] = token

        def refused(status: int, content_type: str, body: bytes) -> Chat2ApiError:
            if status in RESUME_RETRY_STATUSES:
                return classify(status, content_type, body, what="conversation resume")
            return ResumeRefused(f"ChatGPT would not resume the answer (HTTP {status})")

        return await open_event_stream(
            self.http,
            ctx,
            f"{ctx.base}/f/conversation/resume",
            headers=headers,
            body={"conversation_id": conversation_id, "offset": offset},
            limits=self.limits,
            what="conversation resume",
            classify_error=refused,
        )

    # ------------------------------------------------------------------ the calls

    async def sentinel(
        self, ctx: TurnContext, rng: random.Random, page: SitePage
    ) -> SentinelTokens:
        """prepare → solve → finalize (docs/backend-2026.md#one-turn)."""
        config = pow.config_2026(
            ctx.profile,
            device_id=ctx.device_id,
            build_id=page.build,
            script_src=page.sentinel_script(),
            rng=rng,
        )
        # The 2026 requirements token is not searched for (docs/sentinel.md#tokens): element 3
        # is 1, then "~S".
        p = pow.requirements_token(config, algorithm="fnv1a", rng=rng)
        prepared = self._json(
            await self._post(ctx, "/sentinel/chat-requirements/prepare", {"p": p}),
            "chat-requirements/prepare",
            spoken=True,
        )
        prepare_token = prepared.get("prepare_token")
        if not isinstance(prepare_token, str) or not prepare_token:
            raise UpstreamError("ChatGPT's chat-requirements/prepare answer has no prepare_token")
        self._unsolved("so", prepared.get("so"))
        turnstile = await self.solvers.turnstile(ctx, p, prepared.get("turnstile"))
        answer = await solve_challenge(
            config, prepared.get("proofofwork"), self.limits, self.algorithm
        )
        finalize: dict[str, Any] = {"prepare_token": prepare_token}
        if turnstile is not None:
            finalize["turnstile"] = turnstile
        proof = None
        if answer is not None:
            # The 2026 token form whatever the hash: the site checks the form by its suffix.
            proof = pow.PROOF_PREFIX + answer + pow.SUFFIX_2026
            finalize["proofofwork"] = proof
        final = self._json(
            await self._post(ctx, "/sentinel/chat-requirements/finalize", finalize),
            "chat-requirements/finalize",
        )
        token = final.get("token")
        if not isinstance(token, str) or not token:
            raise UpstreamError("ChatGPT's chat-requirements/finalize answer has no token")
        persona = final.get("persona") or prepared.get("persona")
        return SentinelTokens(
            chat_requirements=token,
            proof=proof,
            persona=persona if isinstance(persona, str) else None,
        )

    async def conduit(
        self, ctx: TurnContext, bodies: TurnBodies, trace_id: str, build: str | None
    ) -> str:
        """The conduit token of ``f/conversation/prepare`` (docs/backend-2026.md#conduit-prepare);
        "" when it gave none.

        One call, as aurora's first: an empty ``x-conduit-token`` and state ``none``;
        no sentinel headers (aurora's test asserts that).
        """
        headers = self._headers(ctx, "/f/conversation/prepare", trace_id, build, accept="*/*")
        headers["x-conduit-token"] = ""
        data = self._json(
            await self._post(ctx, "/f/conversation/prepare", bodies.prepare(), headers=headers),
            "f/conversation/prepare",
            spoken=True,
        )
        token = data.get("conduit_token")
        return token if isinstance(token, str) else ""

    # ------------------------------------------------------------------ helpers

    def _headers(
        self,
        ctx: TurnContext,
        path: str,
        trace_id: str,
        build: str | None,
        *,
        accept: str = "text/event-stream",
    ) -> dict[str, str]:
        """ctx's browser headers plus the 2026 set (docs/backend-2026.md#headers)."""
        h = ctx.headers(accept=accept)
        target = ctx.base[len(ctx.origin) :] + path
        h["x-openai-target-path"] = target
        h["x-openai-target-route"] = target
        h["x-oai-turn-trace-id"] = trace_id
        h["oai-session-id"] = str(uuid.uuid5(_SESSION_NS, f"{ctx.device_id}:{self._boot}"))
        if build:
            h["oai-client-version"] = build
        return h

    async def _post(
        self,
        ctx: TurnContext,
        path: str,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        return await self.http.request(
            "POST",
            ctx.base + path,
            headers=headers if headers is not None else ctx.headers(),
            json_body=body,
            impersonate=ctx.profile.impersonate,
            timeout=self.limits.sentinel_timeout,
            proxy=ctx.sentinel_via if path.startswith("/sentinel/") else ctx.proxy,
        )

    def _json(self, answer: HttpAnswer, what: str, *, spoken: bool = False) -> dict[str, Any]:
        """The JSON object of a 200; ``spoken`` marks an endpoint only this dialect has."""
        if spoken and answer.status in (404, 405):
            raise DialectNotSpoken(self.name, what, answer.status)
        if answer.status != 200:
            raise classify(answer.status, answer.content_type, answer.body, what=what)
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(f"ChatGPT's {what} answer is not a JSON object")
        return data

    def _unsolved(self, name: str, challenge: Any) -> None:
        if isinstance(challenge, dict) and challenge.get("required") and name not in self._warned:
            self._warned.add(name)
            log.warning(
                "ChatGPT asks for a %s token, which chat2api does not solve; "
                "going on without it (the backend may refuse the turn)",
                name,
            )
