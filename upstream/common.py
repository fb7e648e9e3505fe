"""What the dialects share: limits, sentinel results, solving a challenge, opening a stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pow
from accounts.pool import Outcome
from errors import Chat2ApiError, UpstreamError, UpstreamUnavailable
from ops.metrics import METRICS
from upstream.context import TurnContext
from upstream.failures import classify
from upstream.http import BackendHttp, StreamAnswer

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Limits:
    pow_threshold: str
    pow_max_iterations: int = 500_000
    #: The hash of proof-of-work challenges; None takes the dialect's own (``POW_ALGORITHM``).
    pow_algorithm: pow.Algorithm | None = None
    sentinel_timeout: float = 15.0
    first_byte_timeout: float = 60.0


@dataclass(frozen=True, kw_only=True)
class SentinelTokens:
    chat_requirements: str
    proof: str | None
    turnstile: str | None = None
    arkose: str | None = None
    persona: str | None = None

    def headers(self) -> dict[str, str]:
        """The ``openai-sentinel-*`` headers of a conversation call."""
        h = {"openai-sentinel-chat-requirements-token": self.chat_requirements}
        if self.proof:
            h["openai-sentinel-proof-token"] = self.proof
        if self.turnstile:
            h["openai-sentinel-turnstile-token"] = self.turnstile
        if self.arkose:
            h["openai-sentinel-arkose-token"] = self.arkose
        return h


async def solve_challenge(
    config: list[Any], challenge: Any, limits: Limits, algorithm: pow.Algorithm
) -> str | None:
    """The answer (base64, no prefix) to a ``proofofwork`` object, None when not required."""
    if not isinstance(challenge, dict) or not challenge.get("required"):
        return None
    seed, difficulty = challenge.get("seed"), challenge.get("difficulty")
    if not isinstance(seed, str) or not isinstance(difficulty, str):
        raise UpstreamError("ChatGPT asked for a proof of work without seed or difficulty")
    try:
        if pow.too_hard(difficulty, limits.pow_threshold, algorithm=algorithm):
            error: Chat2ApiError = UpstreamUnavailable(
                f"ChatGPT asked for a proof of work of difficulty {difficulty}, at least as "
                f"hard as the POW_DIFFICULTY threshold {limits.pow_threshold}"
            )
            error.outcome = Outcome.FORBIDDEN_UNUSUAL  # type: ignore[attr-defined]
            raise error
        started = time.monotonic()
        answer = await pow.solve_async(
            config,
            seed,
            difficulty,
            algorithm=algorithm,
            max_iterations=limits.pow_max_iterations,
        )
        METRICS.pow_seconds.observe(time.monotonic() - started)
        return answer
    except pow.ProofOfWorkError as e:
        raise UpstreamUnavailable(f"proof of work failed: {e}") from None
    except ValueError as e:
        raise UpstreamError(f"ChatGPT sent an invalid proof-of-work challenge: {e}") from None


async def open_event_stream(
    http: BackendHttp,
    ctx: TurnContext,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Any,
    limits: Limits,
    what: str,
    classify_error: Callable[[int, str, bytes], Chat2ApiError] | None = None,
) -> StreamAnswer:
    """POST ``body`` and return the stream once it is a 200 event stream.

    Anything else is read, closed and turned into an error by ``classify_error``
    (status, content type, body), by default :func:`upstream.failures.classify`.
    """
    stream = await http.open_stream(
        url,
        headers=headers,
        json_body=body,
        impersonate=ctx.profile.impersonate,
        first_byte_timeout=limits.first_byte_timeout,
        proxy=ctx.proxy,
    )
    content_type = stream.headers.get("content-type", "")
    if stream.status == 200 and "event-stream" in content_type:
        return stream
    try:
        raw = await stream.read_all()
    finally:
        await stream.close()
    status = stream.status if stream.status != 200 else 502
    if classify_error is not None:
        raise classify_error(status, content_type, raw)
    raise classify(status, content_type, raw, what=what)
