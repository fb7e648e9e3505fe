"""One ``/v1/chat/completions`` request, from parsed body to OpenAI answer.

The order of work:

1. resolve the model and the account (pool, direct token or anonymous);
2. run the dialect's sentinel + proof of work and open the backend stream;
3. *prime* it: read until the first visible piece (text, reasoning, finish or
   failure). Until then nothing has reached the client, so a failure may be
   retried on another account; after it, failures become an in-stream
   ``{"error": ...}`` event;
4. stream (or gather) the translated pieces as OpenAI chunks, counting usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from accounts.pool import Credential, Outcome, PoolSession
from service.media import MediaResolver
from translator import answer as tr
from translator import chunks as oa
from translator.errors import Chat2ApiError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from translator.models import ResolvedModel
from translator.request import ChatRequest
from translator.stream import Translation
from translator.usage import count_prompt_tokens, count_text_tokens
from upstream.context import TurnContext
from upstream.failures import outcome_of
from upstream.http import StreamAnswer

log = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters + string.digits


def completion_id() -> str:
    return "chatcmpl-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(29))


class Accounts(Protocol):
    """What the completion path needs from the account pool."""

    def session(
        self,
        bearer: str | None,
        header_account_id: str | None,
        body_account_id: str | None,
        *,
        model: str,
    ) -> PoolSession: ...


class Dialect(Protocol):
    name: str

    async def open_conversation(
        self, ctx: TurnContext, body: dict[str, Any], rng: random.Random
    ) -> StreamAnswer: ...


class ContextFactory(Protocol):
    def __call__(self, credential: Credential, rng: random.Random) -> TurnContext: ...


class BodyBuilder(Protocol):
    def __call__(
        self, req: ChatRequest, model: ResolvedModel, ctx: TurnContext, rng: random.Random
    ) -> dict[str, Any]: ...


@dataclass(kw_only=True)
class Limits:
    retry_times: int
    idle_timeout: float
    total_timeout: float
    inline_reasoning: bool


@dataclass(kw_only=True)
class Primed:
    """A committed backend stream and what was read from it so far."""

    stream: StreamAnswer
    translation: Translation
    pieces: list[Any]
    ctx: TurnContext
    credential: Credential
    deadline: float
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A finished, non-streamed answer (or an error) ready to send."""

    status: int
    headers: dict[str, str]
    body: bytes


class CompletionService:
    def __init__(
        self,
        *,
        accounts: Accounts,
        dialect: Dialect,
        make_context: ContextFactory,
        build_body: BodyBuilder,
        media: MediaResolver,
        limits: Limits,
    ) -> None:
        self.accounts = accounts
        self.dialect = dialect
        self.make_context = make_context
        self.build_body = build_body
        self.media = media
        self.limits = limits
        self.rng = random.SystemRandom()

    async def prime(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        *,
        bearer: str | None,
        header_account_id: str | None,
    ) -> Primed:
        """Open a backend stream that has produced its first piece, retrying before that."""
        session = self.accounts.session(bearer, header_account_id, req.account_id, model=model.slug)
        deadline = time.monotonic() + self.limits.total_timeout
        last_error: Chat2ApiError | None = None
        while (credential := await session.next()) is not None:
            try:
                primed = await asyncio.wait_for(
                    self._attempt(req, model, credential, deadline),
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except (asyncio.TimeoutError, TimeoutError):
                await session.report(Outcome.TIMEOUT, detail="total deadline")
                raise UpstreamTimeout(
                    "the ChatGPT backend did not answer within the total deadline"
                ) from None
            except Chat2ApiError as e:
                outcome = outcome_of(e)
                log.info(
                    "attempt %d as %r failed: %s (%s)",
                    session.attempts,
                    credential,
                    e.message,
                    outcome.value if outcome else "not retried",
                )
                if outcome is None:
                    raise
                await session.report(
                    outcome, clears_in=getattr(e, "retry_after", None), detail=e.message[:200]
                )
                last_error = e
                continue
            await session.report(Outcome.OK)
            return primed
        if last_error is None:  # the session gave no account at all
            raise UpstreamUnavailable("no account is available for this request")
        raise last_error

    async def _attempt(
        self, req: ChatRequest, model: ResolvedModel, credential: Credential, deadline: float
    ) -> Primed:
        ctx = self.make_context(credential, self.rng)
        body = self.build_body(req, model, ctx, self.rng)
        stream = await self.dialect.open_conversation(ctx, body, self.rng)
        translation = Translation(inline_reasoning=self.limits.inline_reasoning)
        pieces: list[Any] = []
        try:
            async for chunk in stream.chunks(idle_timeout=self.limits.idle_timeout):
                pieces.extend(translation.feed(chunk))
                if any(_is_first_output(p) for p in pieces):
                    break
            else:
                pieces.extend(translation.finish())
        except BaseException:
            await stream.close()
            raise
        failure = next((p for p in pieces if isinstance(p, tr.Failure)), None)
        if failure is not None and not any(isinstance(p, (tr.Text, tr.Reasoning)) for p in pieces):
            await stream.close()
            raise failure.error
        return Primed(
            stream=stream,
            translation=translation,
            pieces=pieces,
            ctx=ctx,
            credential=credential,
            deadline=deadline,
        )

    async def pieces(self, primed: Primed) -> AsyncIterator[Any]:
        """Every piece of the answer, primed ones first; ends with Finish or Failure."""
        try:
            for piece in primed.pieces:
                yield _terminal(piece)
                if isinstance(piece, _TERMINAL):
                    return
            remaining = primed.deadline - time.monotonic()
            idle = min(self.limits.idle_timeout, max(0.1, remaining))
            try:
                async for chunk in primed.stream.chunks(idle_timeout=idle):
                    for piece in primed.translation.feed(chunk):
                        yield _terminal(piece)
                        if isinstance(piece, _TERMINAL):
                            return
                    if time.monotonic() > primed.deadline:
                        raise UpstreamTimeout("the answer took longer than the total deadline")
            except Chat2ApiError as e:
                yield tr.Failure(error=e)
                return
            for piece in primed.translation.finish():
                yield _terminal(piece)
                if isinstance(piece, _TERMINAL):
                    return
            yield tr.Failure(
                error=UpstreamError("the ChatGPT backend stream ended without an answer")
            )
        finally:
            await primed.stream.close()

    async def render(self, piece: Any, primed: Primed) -> tuple[str, str]:
        """A piece as (content text, reasoning text); media pieces are resolved here."""
        if isinstance(piece, tr.Text):
            return piece.text, ""
        if isinstance(piece, tr.Reasoning):
            return "", piece.text
        if isinstance(piece, tr.Image):
            return await self.media.image_markdown(primed.ctx, piece), ""
        if isinstance(piece, tr.SandboxLink):
            return await self.media.sandbox_markdown(primed.ctx, piece), ""
        progress = getattr(tr, "Progress", None)
        if progress is not None and isinstance(piece, progress):
            return "", piece.text
        return "", ""

    # -- the two answer shapes -------------------------------------------------

    async def stream_body(
        self, req: ChatRequest, model: ResolvedModel, primed: Primed
    ) -> AsyncIterator[bytes]:
        """The SSE body of a streamed answer."""
        encoder = oa.ChunkEncoder(
            completion_id=completion_id(),
            created=int(time.time()),
            model=model.reported,
            include_usage=req.include_usage,
            system_fingerprint=_fingerprint(model, self.rng),
        )
        content_parts: list[str] = []
        reasoning_parts: list[str] = []
        yield encoder.start()
        async for piece in self.pieces(primed):
            if isinstance(piece, tr.Failure):
                yield encoder.error(piece.error)
                return
            if isinstance(piece, tr.Finish):
                usage = _usage(req, model, content_parts, reasoning_parts)
                yield encoder.finish(piece.reason, usage)
                return
            content, reasoning = await self.render(piece, primed)
            if reasoning:
                reasoning_parts.append(reasoning)
                yield encoder.reasoning(reasoning)
            if content:
                content_parts.append(content)
                yield encoder.content(content)

    async def complete(self, req: ChatRequest, model: ResolvedModel, primed: Primed) -> Answer:
        """A whole non-streamed answer."""
        aggregator = oa.CompletionAggregator(
            completion_id=completion_id(),
            created=int(time.time()),
            model=model.reported,
            system_fingerprint=_fingerprint(model, self.rng),
        )
        async for piece in self.pieces(primed):
            if isinstance(piece, tr.Failure):
                return error_answer(piece.error)
            if isinstance(piece, tr.Finish):
                aggregator.finish(piece.reason)
                usage = _usage(req, model, [aggregator.text], [aggregator.reasoning_text])
                body = json.dumps(aggregator.build(usage), ensure_ascii=False).encode()
                return Answer(status=200, headers={"content-type": "application/json"}, body=body)
            content, reasoning = await self.render(piece, primed)
            if content:
                aggregator.content(content)
            if reasoning:
                aggregator.reasoning(reasoning)
        return error_answer(UpstreamError("the ChatGPT backend stream ended without an answer"))


_TERMINAL = (tr.Finish, tr.Failure, tr.Pending)


def _terminal(piece: Any) -> Any:
    """A Pending end (the answer continues elsewhere) is a failure for now."""
    if isinstance(piece, tr.Pending):
        return tr.Failure(
            error=UpstreamError(
                f"the ChatGPT backend moved the answer elsewhere ({piece.kind}); "
                "chat2api cannot follow it yet"
            )
        )
    return piece


def _is_first_output(piece: Any) -> bool:
    return isinstance(piece, (tr.Text, tr.Reasoning, tr.Image, *_TERMINAL))


def _fingerprint(model: ResolvedModel, rng: random.Random) -> str | None:
    choices = model.system_fingerprint
    return rng.choice(list(choices)) if choices else None


def _usage(
    req: ChatRequest, model: ResolvedModel, content: list[str], reasoning: list[str]
) -> oa.Usage:
    prompt = count_prompt_tokens(req.messages, model.reported)
    completion = count_text_tokens("".join(content), model.reported)
    thought = "".join(reasoning)
    reasoning_tokens = count_text_tokens(thought, model.reported) if thought else 0
    return oa.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion + reasoning_tokens,
        reasoning_tokens=reasoning_tokens,
    )


def error_answer(error: Chat2ApiError) -> Answer:
    headers = {"content-type": "application/json"}
    headers.update(error.headers())
    return Answer(
        status=error.status,
        headers=headers,
        body=json.dumps(error.to_dict(), ensure_ascii=False).encode(),
    )
