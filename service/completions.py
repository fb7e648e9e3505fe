"""One ``/v1/chat/completions`` request, from parsed body to OpenAI answer.

The order of work:

1. resolve the model and the account (pool, direct token or anonymous);
2. run the dialect's sentinel + proof of work and open the backend stream;
3. *prime* it: read until the first visible piece (text, reasoning, finish or
   failure). Until then nothing has reached the client, so a failure may be
   retried on another account; after it, failures become an in-stream
   ``{"error": ...}`` event;
4. stream (or gather) the translated pieces as OpenAI chunks, counting usage.

Throughout 3 and 4, a backend stream that breaks or stalls before its end is
resumed where it stopped when the dialect can do it, and a turn the backend
hands off to another stream is followed there (``_backend_chunks``,
docs/stream-handoff.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import string
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from accounts.pool import Credential, Outcome, PoolSession
from errors import (
    Chat2ApiError,
    ModelDowngraded,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ops import requestid
from ops.metrics import METRICS
from service.media import MediaResolver
from service.uploads import Blobs, Uploader
from translator import answer as tr
from translator import chunks as oa
from translator.backend_body import Attachments
from translator.models import ResolvedModel, switched_model
from translator.request import ChatRequest
from translator.shaping import Shaper
from translator.stream import Translation
from translator.usage import count_prompt_tokens, count_text_tokens
from upstream.context import TurnContext
from upstream.dialect import Dialect, ResumeRefused, Turn, TurnBodies
from upstream.failures import NOT_THE_ACCOUNT, outcome_of
from upstream.http import StreamAnswer

log = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters + string.digits


def completion_id() -> str:
    # One read of the system's random source instead of 29 (secrets.choice each).
    # 256 % 62 leaves a slight skew: harmless for an id that is not a secret.
    return "chatcmpl-" + "".join([_ID_ALPHABET[b % 62] for b in secrets.token_bytes(29)])


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


class ContextFactory(Protocol):
    def __call__(self, credential: Credential, rng: random.Random) -> TurnContext: ...


class BodyBuilder(Protocol):
    def __call__(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        ctx: TurnContext,
        rng: random.Random,
        attachments: Attachments | None = None,
    ) -> TurnBodies: ...


@dataclass(kw_only=True)
class Limits:
    retry_times: int
    idle_timeout: float
    total_timeout: float
    inline_reasoning: bool
    #: Resumes in a row that bring no new event before a broken stream is given up.
    resume_attempts: int = 5
    #: An answer from another model than the one asked for: pass, error or retry.
    on_downgrade: str = "pass"


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
    #: The dialect's handle on the turn; ``stream`` is its current (maybe resumed) stream.
    turn: Turn | None = None
    #: The model that answered when ChatGPT switched away from the one asked for.
    switched: str | None = None
    #: Stream handoffs followed so far, and whether one waits to be followed now.
    handoffs: int = 0
    follow_now: bool = False

    def reported(self, model: ResolvedModel) -> str:
        """The ``model`` of the answer: the one that answered, if it was switched."""
        return self.switched or model.reported


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
        uploader: Uploader | None = None,
    ) -> None:
        self.accounts = accounts
        self.dialect = dialect
        self.make_context = make_context
        self.build_body = build_body
        self.media = media
        self.uploader = uploader
        self.limits = limits
        # Ids, browser noise and jitter: nothing secret, so no system call per draw
        # (random.Random() seeds itself from os.urandom).
        self.rng = random.Random()

    async def prime(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        *,
        bearer: str | None,
        header_account_id: str | None,
        blobs: Blobs | None = None,
    ) -> Primed:
        """Open a backend stream that has produced its first piece, retrying before that."""
        session = self.accounts.session(bearer, header_account_id, req.account_id, model=model.slug)
        deadline = time.monotonic() + self.limits.total_timeout
        last_error: Chat2ApiError | None = None
        while (credential := await session.next()) is not None:
            if last_error is not None:
                METRICS.retries.inc()
            try:
                # (asyncio.timeout, not wait_for: no task of its own per attempt)
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    primed = await self._attempt(req, model, credential, deadline, blobs)
            except TimeoutError:
                METRICS.backend_error("timeout")
                await session.report(Outcome.TIMEOUT, detail="total deadline")
                raise UpstreamTimeout(
                    "the ChatGPT backend did not answer within the total deadline"
                ) from None
            except Chat2ApiError as e:
                outcome = outcome_of(e)
                METRICS.backend_error(outcome.value if outcome else type(e).__name__)
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
            if primed.switched is not None:
                await session.report(
                    Outcome.DOWNGRADED, detail=f"answered {primed.switched} for {model.slug}"
                )
            else:
                await session.report(Outcome.OK)
            requestid.note(account=primed.ctx.label)
            return primed
        if last_error is None:  # the session gave no account at all
            raise UpstreamUnavailable("no account is available for this request")
        raise last_error

    async def _attempt(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        credential: Credential,
        deadline: float,
        blobs: Blobs | None = None,
    ) -> Primed:
        ctx = self.make_context(credential, self.rng)
        attachments: Attachments | None = None
        if blobs:
            # Files belong to the account that answers: uploaded once per attempt.
            if self.uploader is None:
                raise UpstreamError("media parts need the upload service, which is not set up")
            offset = ctx.profile.timezone_offset_min(datetime.now(UTC))
            attachments = await self.uploader.upload_all(ctx, blobs, timezone_offset_min=offset)
        bodies = self.build_body(req, model, ctx, self.rng, attachments)
        turn = await self.dialect.open_conversation(ctx, bodies, self.rng)
        primed = Primed(
            stream=turn.stream,
            turn=turn,
            # With emulated tools, ChatGPT's own tool traffic is reasoning, not the answer.
            translation=Translation(
                inline_reasoning=self.limits.inline_reasoning,
                quiet_tools=req.options.calls_allowed,
            ),
            pieces=[],
            ctx=ctx,
            credential=credential,
            deadline=deadline,
        )
        translation, pieces = primed.translation, primed.pieces
        try:
            # (aclosing: a generator left at `break` would be closed by the loop's
            # finaliser later, at the cost of a wake-up of its own)
            async with contextlib.aclosing(self._backend_chunks(primed)) as chunks:
                async for chunk in chunks:
                    pieces.extend(self._unless_followed(primed, translation.feed(chunk)))
                    if any(_is_first_output(p) for p in pieces):
                        break
                else:
                    pieces.extend(translation.finish())
        except BaseException:
            await primed.stream.close()
            raise
        failure = next((p for p in pieces if isinstance(p, tr.Failure)), None)
        if failure is not None and not any(isinstance(p, (tr.Text, tr.Reasoning)) for p in pieces):
            await primed.stream.close()
            raise failure.error
        try:
            self._check_switch(model, primed, credential)
        except BaseException:
            await primed.stream.close()
            raise
        return primed

    def _check_switch(self, model: ResolvedModel, primed: Primed, credential: Credential) -> None:
        """Note (or refuse) an answer from another model than the one asked for."""
        translation = primed.translation
        answered = switched_model(model.slug, translation.model_slug, translation.model_adjustments)
        if answered is None:
            return
        why = ", ".join(translation.model_adjustments)
        log.warning(
            "model switched: %s was asked for (%s), ChatGPT answered with %s as %r%s",
            model.requested,
            model.slug,
            answered,
            credential,
            f" ({why})" if why else "",
        )
        primed.switched = answered
        if self.limits.on_downgrade == "pass":
            return
        error = ModelDowngraded(
            f"ChatGPT answered with {answered} instead of {model.requested}"
            + (f" ({why})" if why else "")
            + "; this chat2api refuses such answers (on_downgrade)."
        )
        # retry: the pool notes it and tries another account; error: no retry.
        retry = self.limits.on_downgrade == "retry"
        error.outcome = Outcome.DOWNGRADED if retry else NOT_THE_ACCOUNT  # type: ignore[attr-defined]
        raise error

    async def pieces(self, primed: Primed) -> AsyncGenerator[Any, None]:
        """Every piece of the answer, primed ones first; ends with Finish or Failure."""
        try:
            async with contextlib.aclosing(self._translated(primed)) as translated:
                async for batch in translated:
                    for piece in batch:
                        if not isinstance(piece, _TERMINAL):
                            yield piece
                            continue
                        if _is_async(piece):
                            async for p in self._follow(primed, piece):
                                yield p
                            return
                        yield _terminal(piece)
                        return
            yield tr.Failure(
                error=UpstreamError("the ChatGPT backend stream ended without an answer")
            )
        finally:
            await primed.stream.close()

    async def _translated(self, primed: Primed) -> AsyncGenerator[list[Any], None]:
        """The raw pieces: primed ones, then the rest of the stream, then its end.

        A backend failure while reading becomes a Failure piece. Pieces come in
        the lists the translator returns, never empty: one hop of this generator
        per backend read, not per piece.
        """
        if primed.pieces:
            yield primed.pieces
        try:
            async with contextlib.aclosing(self._backend_chunks(primed)) as chunks:
                async for chunk in chunks:
                    batch = primed.translation.feed(chunk)
                    if batch and type(batch[-1]) is tr.Pending:  # (the hot path skips a call)
                        batch = self._unless_followed(primed, batch)
                    if batch:
                        yield batch
                    if time.monotonic() > primed.deadline:
                        raise UpstreamTimeout("the answer took longer than the total deadline")
        except Chat2ApiError as e:
            yield [tr.Failure(error=e)]
            return
        batch = primed.translation.finish()
        if batch:
            yield batch

    async def _backend_chunks(self, primed: Primed) -> AsyncGenerator[bytes, None]:
        """The answer's bytes, across resumed streams (``docs/backend-2026.md#resume``).

        When the stream breaks, stalls or ends before ``[DONE]`` with the answer
        unfinished, and the dialect can resume the turn, the rest is fetched from
        the number of events already translated: nothing is repeated or lost and
        the client does not notice. Up to ``resume_attempts`` resumes in a row that
        bring no new event, with the page's backoff; then the failure stands as it
        would have without resuming. The caller feeds every chunk to
        ``primed.translation`` before asking for the next one.

        Temporary chats (``history_disabled``, chat2api's default) are resumed too,
        although the page does not resume them: resume is a read that never posts
        the prompt again, so it cannot duplicate anything, and a backend that keeps
        no such stream answers 404, which ends in the error the client would have
        got anyway. Skipping them would turn the feature off by default.
        """
        translation = primed.translation
        failures = 0
        while True:
            idle = min(self.limits.idle_timeout, max(0.1, primed.deadline - time.monotonic()))
            consumed = translation.events_consumed
            error: UpstreamError | None = None
            try:
                async with contextlib.aclosing(primed.stream.chunks(idle_timeout=idle)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            except UpstreamError as e:  # the stream broke or stalled
                error = e
            if self._follows(primed):
                # The turn goes on in another stream: read it from its start, as the
                # page does (docs/stream-handoff.md), however this one ended.
                handoff = translation.handoff
                translation.follow_handoff()
                primed.handoffs += 1
                primed.follow_now = True
                failures = 0
                log.info(
                    "ChatGPT handed conversation %s off (%s); following it",
                    translation.conversation_id,
                    ", ".join(str(o.get("type")) for o in handoff.options) if handoff else "",
                )
            elif translation.finished or translation.saw_done:
                if error is not None:
                    raise error
                return
            elif translation.events_consumed > consumed:
                failures = 0  # the page's counter resets on every event received
            resumed = None
            resumable = primed.turn is not None and primed.turn.resumer is not None
            if resumable:
                await primed.stream.close()
            # A handoff is followed even with resuming turned off: it is no retry, the
            # answer is only there.
            attempts = self.limits.resume_attempts or (1 if primed.follow_now else 0)
            while resumable and resumed is None and failures < attempts:
                failures += 1
                try:
                    resumed = await self._resume(primed, failures, error)
                except ResumeRefused as e:
                    log.info("resume refused: %s", e.message)
                    break
                except Chat2ApiError as e:
                    log.info("resume attempt %d failed: %s", failures, e.message)
            if resumed is None:
                if primed.follow_now:
                    raise UpstreamError(
                        "ChatGPT handed the answer off to another stream, and "
                        "/f/conversation/resume would not serve it"
                    )
                if error is not None:
                    raise error
                return  # the caller's translation.finish() reports the early end
            primed.stream = resumed
            if primed.turn is not None:
                primed.turn.stream = resumed
            translation.resume()

    async def _resume(
        self, primed: Primed, attempt: int, cause: UpstreamError | None
    ) -> StreamAnswer:
        """One resume call, after the page's backoff."""
        translation = primed.translation
        token = translation.resume_token
        resumer = primed.turn.resumer if primed.turn is not None else None
        conversation_id = translation.conversation_id
        if conversation_id is None and token is not None:
            conversation_id = token.conversation_id
        offset = translation.events_consumed
        # Without a token the page tries offset 0 only, sending "no-token"
        # (docs/backend-2026.md#resume, docs/stream-handoff.md).
        if resumer is None or (token is None and offset) or not conversation_id:
            raise ResumeRefused("this turn cannot be resumed")
        # A handoff is followed at once; a broken stream after the page's backoff:
        # min(300 * 1.5^(n-1), 5000) ms, times U[0.5, 1) (docs/backend-2026.md#resume).
        delay = 0.0 if primed.follow_now and attempt == 1 else self._backoff(attempt)
        if time.monotonic() + delay >= primed.deadline:
            raise ResumeRefused("no time is left to resume the answer")
        await asyncio.sleep(delay)
        if primed.follow_now:
            why = "following a stream handoff"
        else:
            why = cause.message if cause is not None else "the stream ended before [DONE]"
        log.info("resuming conversation %s at event %d (%s)", conversation_id, offset, why)
        stream = await resumer(
            conversation_id=conversation_id,
            offset=offset,
            token=token.token if token is not None else "no-token",
        )
        primed.follow_now = False
        return stream

    def _backoff(self, attempt: int) -> float:
        return min(0.3 * 1.5 ** (attempt - 1), 5.0) * self.rng.uniform(0.5, 1.0)

    def _follows(self, primed: Primed) -> bool:
        """Whether this turn's stream handed off and the dialect can follow it."""
        return (
            primed.translation.handoff is not None
            and primed.turn is not None
            and primed.turn.resumer is not None
            and primed.handoffs < _MAX_HANDOFFS
        )

    def _unless_followed(self, primed: Primed, batch: list[Any]) -> list[Any]:
        """``batch`` without the Pending end of a handoff that will be followed."""
        if batch and isinstance(batch[-1], tr.Pending) and batch[-1].kind == "handoff":
            if self._follows(primed):
                return batch[:-1]
        return batch

    async def _follow(self, primed: Primed, pending: Any) -> AsyncIterator[Any]:
        """An asynchronous image turn: the stream is over, the images come by polling."""
        await primed.stream.close()
        async for piece in self.media.follow_async(primed.ctx, pending, deadline=primed.deadline):
            yield piece

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
        if isinstance(piece, tr.Progress):
            # Status lines, one per line in the reasoning.
            text = piece.text.strip()
            return "", f"{text}\n" if text else ""
        return "", ""

    # -- the two answer shapes -------------------------------------------------

    async def stream_body(
        self, req: ChatRequest, model: ResolvedModel, primed: Primed, *, show_ids: bool = False
    ) -> AsyncIterator[bytes]:
        """The SSE body of a streamed answer; ``show_ids``: ``conversation_id`` on every chunk."""
        encoder = self.encoder(req, model, primed.reported(model))
        shaper = Shaper(stop=req.options.stop, max_tokens=req.max_tokens, model=model.reported)
        content_parts: list[str] = []
        reasoning_parts: list[str] = []
        # (No separate role chunk first: the encoder puts it before the first
        # content, so the two leave together.)
        async with contextlib.aclosing(self.pieces(primed)) as pieces:
            async for piece in pieces:
                # Text and reasoning, most pieces: what render() makes of them, inline.
                kind = type(piece)
                if kind is tr.Text:
                    text = shaper.content(piece.text) if shaper.active else piece.text
                    if text:
                        content_parts.append(text)
                        yield encoder.content(text)
                elif kind is tr.Reasoning:
                    text = shaper.reasoning(piece.text) if shaper.active else piece.text
                    if text:
                        reasoning_parts.append(text)
                        yield encoder.reasoning(text)
                elif isinstance(piece, tr.Failure):
                    yield encoder.error(piece.error)
                    return
                elif isinstance(piece, tr.Finish):
                    rest = shaper.flush()
                    if rest:
                        content_parts.append(rest)
                        yield encoder.content(rest)
                    usage = usage_for(req, model, content_parts, reasoning_parts)
                    yield encoder.finish(shaper.reason or piece.reason, usage)
                    return
                elif isinstance(piece, tr.Meta):
                    if show_ids and piece.conversation_id:
                        encoder.set_field("conversation_id", piece.conversation_id)
                else:
                    content, reasoning = await self.render(piece, primed)
                    reasoning = shaper.reasoning(reasoning)
                    if reasoning:
                        reasoning_parts.append(reasoning)
                        yield encoder.reasoning(reasoning)
                    content = shaper.content(content)
                    if content:
                        content_parts.append(content)
                        yield encoder.content(content)
                if (
                    shaper.reason is not None
                ):  # cut by stop or max_tokens: end now, the backend is closed
                    usage = usage_for(req, model, content_parts, reasoning_parts)
                    yield encoder.finish(shaper.reason or "stop", usage)
                    return

    def encoder(
        self, req: ChatRequest, model: ResolvedModel, reported: str | None = None
    ) -> oa.ChunkEncoder:
        """``reported``: the model the answer names (the one that answered, if switched)."""
        return oa.ChunkEncoder(
            completion_id=completion_id(),
            created=int(time.time()),
            model=reported or model.reported,
            include_usage=req.include_usage,
            system_fingerprint=_fingerprint(model, self.rng),
        )

    def aggregator(
        self, model: ResolvedModel, reported: str | None = None
    ) -> oa.CompletionAggregator:
        return oa.CompletionAggregator(
            completion_id=completion_id(),
            created=int(time.time()),
            model=reported or model.reported,
            system_fingerprint=_fingerprint(model, self.rng),
        )

    async def complete(
        self, req: ChatRequest, model: ResolvedModel, primed: Primed, *, show_ids: bool = False
    ) -> Answer:
        """A whole non-streamed answer."""
        aggregator = self.aggregator(model, primed.reported(model))
        shaper = Shaper(stop=req.options.stop, max_tokens=req.max_tokens, model=model.reported)
        async with contextlib.aclosing(self.pieces(primed)) as pieces:
            async for piece in pieces:
                if isinstance(piece, tr.Failure):
                    return error_answer(piece.error)
                if isinstance(piece, tr.Meta):
                    if show_ids and piece.conversation_id:
                        aggregator.extra_fields["conversation_id"] = piece.conversation_id
                    continue
                finish = piece.reason if isinstance(piece, tr.Finish) else None
                if finish is None:
                    content, reasoning = await self.render(piece, primed)
                    content, reasoning = shaper.content(content), shaper.reasoning(reasoning)
                else:
                    content, reasoning = shaper.flush(), ""
                if content:
                    aggregator.content(content)
                if reasoning:
                    aggregator.reasoning(reasoning)
                if finish is not None or shaper.done:
                    aggregator.finish(shaper.reason or finish or "stop")
                    usage = usage_for(req, model, [aggregator.text], [aggregator.reasoning_text])
                    body = oa.json_bytes(aggregator.build(usage))
                    return Answer(
                        status=200, headers={"content-type": "application/json"}, body=body
                    )
        return error_answer(UpstreamError("the ChatGPT backend stream ended without an answer"))


_TERMINAL = (tr.Finish, tr.Failure, tr.Pending)
#: Handoffs followed in one turn before the next one is taken as a failure.
_MAX_HANDOFFS = 3


def _terminal(piece: Any) -> Any:
    """A Pending end that is not followed (a handoff the dialect cannot resume) fails."""
    if isinstance(piece, tr.Pending):
        return tr.Failure(
            error=UpstreamError(
                f"the ChatGPT backend moved the answer elsewhere ({piece.kind}) "
                "and this backend dialect cannot follow it"
            )
        )
    return piece


def _is_async(piece: Any) -> bool:
    return isinstance(piece, tr.Pending) and piece.kind == "async"


def _is_first_output(piece: Any) -> bool:
    return isinstance(piece, (tr.Text, tr.Reasoning, tr.Image, *_TERMINAL))


def _fingerprint(model: ResolvedModel, rng: random.Random) -> str | None:
    choices = model.system_fingerprint
    return rng.choice(list(choices)) if choices else None


def usage_for(
    req: ChatRequest, model: ResolvedModel, content: list[str], reasoning: list[str]
) -> oa.Usage:
    prompt = count_prompt_tokens(req.messages, model.reported)
    completion = count_text_tokens("".join(content), model.reported)
    thought = "".join(reasoning)
    reasoning_tokens = count_text_tokens(thought, model.reported) if thought else 0
    METRICS.tokens(prompt, completion + reasoning_tokens)
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
        body=oa.json_bytes(error.to_dict()),
    )
