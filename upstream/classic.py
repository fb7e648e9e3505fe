"""The classic dialect: one-step sentinel, SHA3 proof of work, ``/conversation``.

``chatgpt-backend.md`` §2-§4: ``POST {base}/sentinel/chat-requirements`` with
the requirements token, solve the proof of work it asks for, then ``POST
{base}/conversation`` with the sentinel headers and ``accept:
text/event-stream``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import pow
from accounts.pool import Outcome
from translator.errors import Chat2ApiError, UpstreamError, UpstreamUnavailable
from upstream.context import TurnContext
from upstream.failures import classify
from upstream.http import BackendHttp, StreamAnswer

log = logging.getLogger(__name__)

# The page's own script, used as config element 5 when the home page is unknown.
DEFAULT_SCRIPT = "https://chatgpt.com/backend-api/sentinel/sdk.js"


@dataclass(frozen=True, kw_only=True)
class Limits:
    pow_threshold: str
    pow_max_iterations: int = 500_000
    sentinel_timeout: float = 15.0
    first_byte_timeout: float = 60.0


@dataclass(frozen=True, kw_only=True)
class SentinelTokens:
    chat_requirements: str
    proof: str | None
    turnstile: str | None = None
    persona: str | None = None


class ClassicDialect:
    name = "classic"

    def __init__(self, http: BackendHttp, limits: Limits, *, conversation_only: bool = False):
        self.http = http
        self.limits = limits
        self.conversation_only = conversation_only

    async def sentinel(self, ctx: TurnContext, rng: random.Random) -> SentinelTokens:
        config = pow.classic_config(ctx.profile, script_src=DEFAULT_SCRIPT, build_id=None, rng=rng)
        p = pow.requirements_token(config, algorithm="sha3", rng=rng)
        answer = await self.http.request(
            "POST",
            f"{ctx.base}/sentinel/chat-requirements",
            headers=ctx.headers(),
            json_body={"p": p},
            impersonate=ctx.profile.impersonate,
            timeout=self.limits.sentinel_timeout,
            proxy=ctx.proxy,
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
        proof = await self._solve(config, data.get("proofofwork"), rng)
        return SentinelTokens(chat_requirements=token, proof=proof, persona=data.get("persona"))

    async def _solve(self, config: list[Any], challenge: Any, rng: random.Random) -> str | None:
        if not isinstance(challenge, dict) or not challenge.get("required"):
            return None
        seed, difficulty = challenge.get("seed"), challenge.get("difficulty")
        if not isinstance(seed, str) or not isinstance(difficulty, str):
            raise UpstreamError("ChatGPT asked for a proof of work without seed or difficulty")
        try:
            if pow.too_hard(difficulty, self.limits.pow_threshold):
                error: Chat2ApiError = UpstreamUnavailable(
                    f"ChatGPT asked for a proof of work of difficulty {difficulty}, at least as "
                    f"hard as the POW_DIFFICULTY threshold {self.limits.pow_threshold}"
                )
                error.outcome = Outcome.FORBIDDEN_UNUSUAL  # type: ignore[attr-defined]
                raise error
            answer = await pow.solve_async(
                config,
                seed,
                difficulty,
                algorithm="sha3",
                max_iterations=self.limits.pow_max_iterations,
            )
        except pow.ProofOfWorkError as e:
            raise UpstreamUnavailable(f"proof of work failed: {e}") from None
        except ValueError as e:
            raise UpstreamError(f"ChatGPT sent an invalid proof-of-work challenge: {e}") from None
        return pow.as_proof_token(answer)

    async def open_conversation(
        self, ctx: TurnContext, body: dict[str, Any], rng: random.Random
    ) -> StreamAnswer:
        """Run the sentinel and start the conversation stream (status 200 only)."""
        headers = ctx.headers(accept="text/event-stream")
        if not self.conversation_only:
            tokens = await self.sentinel(ctx, rng)
            headers["openai-sentinel-chat-requirements-token"] = tokens.chat_requirements
            if tokens.proof:
                headers["openai-sentinel-proof-token"] = tokens.proof
            if tokens.turnstile:
                headers["openai-sentinel-turnstile-token"] = tokens.turnstile
        stream = await self.http.open_stream(
            f"{ctx.base}/conversation",
            headers=headers,
            json_body=body,
            impersonate=ctx.profile.impersonate,
            first_byte_timeout=self.limits.first_byte_timeout,
            proxy=ctx.proxy,
        )
        if stream.status != 200:
            try:
                raw = await stream.read_all()
            finally:
                await stream.close()
            raise classify(
                stream.status, stream.headers.get("content-type", ""), raw, what="conversation"
            )
        content_type = stream.headers.get("content-type", "")
        if "event-stream" not in content_type:
            try:
                raw = await stream.read_all()
            finally:
                await stream.close()
            raise classify(502, content_type, raw, what="conversation")
        return stream
