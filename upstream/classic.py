"""The classic dialect: one-step sentinel, SHA3 proof of work, ``/conversation``.

``docs/backend-protocol.md``: ``POST {base}/sentinel/chat-requirements`` with
the requirements token, solve the proof of work it asks for, then ``POST
{base}/conversation`` with the sentinel headers and ``accept:
text/event-stream``. Its streams cannot be resumed.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pow
from errors import UpstreamError
from pow.ahead import AheadOfTime
from upstream.common import Limits, SentinelTokens, open_event_stream, solve_challenge
from upstream.context import TurnContext
from upstream.dialect import Turn, TurnBodies, check_persona
from upstream.failures import classify
from upstream.http import BackendHttp
from upstream.site import SitePage, SitePages
from upstream.solvers import ChallengeSolvers

__all__ = ["ClassicDialect", "Limits", "SentinelTokens"]

log = logging.getLogger(__name__)


def _requirements(
    key: tuple[pow.BrowserProfile, SitePage], rng: random.Random
) -> tuple[list[Any], str]:
    # Element 5 a script of the home page, element 6 its dpl (docs/site-page.md).
    profile, page = key
    config = pow.classic_config(profile, script_src=page.script(rng), build_id=page.dpl, rng=rng)
    # The requirements token is solved locally with SHA3 whatever the challenge hash is.
    return config, pow.requirements_token(config, algorithm="sha3", rng=rng)


class ClassicDialect:
    name = "classic"

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
        self.site = site or SitePages(http)
        self.limits = limits
        self.conversation_only = conversation_only
        self.solvers = solvers or ChallengeSolvers(http)
        self.algorithm: pow.Algorithm = limits.pow_algorithm or "sha3"
        self._requirements = AheadOfTime(_requirements)

    async def sentinel(self, ctx: TurnContext, rng: random.Random) -> SentinelTokens:
        # Made ahead of time, fresh and used once (pow/ahead.py).
        page = await self.site.page(ctx)
        config, p = self._requirements.take((ctx.profile, page), rng)
        answer = await self.http.request(
            "POST",
            f"{ctx.base}/sentinel/chat-requirements",
            headers=ctx.headers(),
            json_body={"p": p},
            impersonate=ctx.profile.impersonate,
            timeout=self.limits.sentinel_timeout,
            proxy=ctx.sentinel_via,
        )
        if answer.status != 200:
            raise classify(
                answer.status, answer.content_type, answer.body, what="chat-requirements"
            )
        try:
            data = answer.json()
            token = data["token"]
            if not isinstance(token, str) or not token:
                raise KeyError("token")
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("ChatGPT's chat-requirements answer has no token") from None
        persona = data.get("persona") if isinstance(data.get("persona"), str) else None
        turnstile = await self.solvers.turnstile(ctx, p, data.get("turnstile"))
        arkose = await self.solvers.arkose(data.get("arkose"), persona)
        solved = await solve_challenge(config, data.get("proofofwork"), self.limits, self.algorithm)
        proof = pow.as_proof_token(solved) if solved is not None else None
        return SentinelTokens(
            chat_requirements=token,
            proof=proof,
            turnstile=turnstile,
            arkose=arkose,
            persona=persona,
        )

    async def open_conversation(
        self, ctx: TurnContext, bodies: TurnBodies, rng: random.Random
    ) -> Turn:
        """Run the sentinel and start the conversation stream (status 200 only)."""
        headers = ctx.headers(accept="text/event-stream")
        if not self.conversation_only:
            tokens = await self.sentinel(ctx, rng)
            check_persona(bodies, tokens.persona)
            headers.update(tokens.headers())
        stream = await open_event_stream(
            self.http,
            ctx,
            f"{ctx.base}/conversation",
            headers=headers,
            body=bodies.conversation("classic", "none"),
            limits=self.limits,
            what="conversation",
        )
        return Turn(stream=stream, wire="classic")
