"""``/v1/responses``: which backend answers, retries, the answer's two shapes, storage.

The Codex backend (``upstream/codex.py``) answers when ``CODEX_BACKEND`` is
``auto`` or ``always`` and the request has an account; otherwise, or when the
account's plan has no Codex for the model (``auto`` only; remembered per
account and model for :data:`PLAN_MEMORY` seconds), the web conversation
answers through :class:`service.completions.CompletionService`.

On the Codex backend an attempt is *primed* like a web one: read until the
first item or delta. Until then nothing has reached the client, so a failure
(HTTP error, ``response.failed``, a stream that ends early) may be retried on
another account; after it, failures end the client's stream with
``response.failed``. Usage limits (``usage_limit_reached``) limit the account
under the pool key ``codex`` until the reset the backend gives, so later
requests skip it, and with no account left the answer is 429 with
``retry-after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from accounts.pool import Credential, Outcome, Pool
from errors import Chat2ApiError, NotFound, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from service.completions import Accounts, Answer, CompletionService, error_answer
from service.emulation import Emulation, turn_events
from service.responsestore import ResponseStore, StoredResponse, owner_of
from service.uploads import MediaFetcher
from settings.model_table import ModelTable
from translator import answer as tr
from translator.chunks import json_bytes
from translator.models import resolve_model
from translator.request import parse_chat_request
from translator.responses.encode import ResponseEncoder, new_id
from translator.responses.events import Decoder, Event, Failed, ItemAdded
from translator.responses.request import (
    ResponsesRequest,
    chat_body,
    codex_body,
    parse_responses_request,
    web_refusal,
)
from translator.responses.web import WebEvents
from translator.toolcalls.protocol import needs_emulation
from translator.usage import count_prompt_tokens, count_text_tokens
from upstream.codex import (
    FOREIGN_REASONING,
    PLAN_REFUSED,
    CodexBackend,
    codex_reason,
    failure_error,
    limit_headers,
)
from upstream.context import TurnContext
from upstream.failures import outcome_of
from upstream.http import StreamAnswer

log = logging.getLogger(__name__)

Mode = Literal["auto", "always", "never"]
#: The pool key under which Codex usage limits are remembered per account.
CODEX_LIMIT_KEY = "codex"
#: How long an account the Codex backend refused for a model stays on the web path.
PLAN_MEMORY = 24 * 3600.0
#: How long the end of a Codex stream is awaited after its terminal event.
DRAIN_SECONDS = 0.5

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


def plan_key(slug: str) -> str:
    """The pool key remembering accounts whose plan has no Codex for ``slug``."""
    return f"codex-web:{slug}"


@dataclass(kw_only=True)
class Streamed:
    """A streamed answer for the route to send."""

    headers: dict[str, str]
    body: AsyncIterator[bytes]
    account: str


@dataclass(kw_only=True)
class CodexPrimed:
    stream: StreamAnswer
    decoder: Decoder
    events: list[Event]
    ctx: TurnContext
    deadline: float


@dataclass(frozen=True, kw_only=True)
class _Turn:
    """One request as the answer and its storage see it."""

    req: ResponsesRequest
    history: list[dict[str, Any]]
    owner: str
    cache_key: str


class UseWebConversation(Exception):
    """Raised by :meth:`ResponsesService.prime_codex`: answer on the web conversation."""


@dataclass(frozen=True, kw_only=True)
class ResponsesLimits:
    idle_timeout: float
    total_timeout: float
    max_body_bytes: int


class ResponsesService:
    def __init__(
        self,
        *,
        accounts: Accounts,
        pool: Pool,
        codex: CodexBackend,
        make_context: Callable[[Credential, random.Random], TurnContext],
        completions: CompletionService,
        web_models: ModelTable,
        codex_models: ModelTable,
        unknown_model: str,
        mode: Mode,
        store: ResponseStore,
        limits: ResponsesLimits,
        media: MediaFetcher | None = None,
    ) -> None:
        self.accounts = accounts
        self.pool = pool
        self.codex = codex
        self.make_context = make_context
        self.completions = completions
        self.web_models = web_models
        self.codex_models = codex_models
        self.unknown_model = unknown_model
        self.mode = mode
        self.store = store
        self.limits = limits
        self.media = media
        self.emulation = Emulation(completions)
        self.rng = random.Random()

    # -- the routes ------------------------------------------------------------------

    async def create(
        self, headers: Mapping[str, str], body: bytes, bearer: str | None
    ) -> Answer | Streamed:
        req = parse_responses_request(body, max_body_bytes=self.limits.max_body_bytes)
        owner = owner_of(bearer)
        response_id = new_id("resp_")
        history: list[dict[str, Any]] = []
        # One prompt cache key for a whole chain of responses (cache affinity).
        cache_key = response_id
        if req.previous_response_id is not None:
            previous = await self.store.get(req.previous_response_id)
            if previous is None or not previous.owned_by(owner):
                raise NotFound(
                    f"Previous response with id '{req.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = previous.history()
            cache_key = previous.cache_key or cache_key
        cache_key = req.prompt_cache_key or cache_key
        turn = _Turn(req=req, history=history, owner=owner, cache_key=cache_key)
        account_header = headers.get("chatgpt-account-id")
        if self.mode != "never":
            model = resolve_model(self.codex_models, req.model, unknown=self.unknown_model)
            try:
                primed = await self.prime_codex(
                    req, model.slug, history, bearer, account_header, cache_key=cache_key
                )
            except UseWebConversation:
                pass
            else:
                encoder = self._encoder(req, model.reported, response_id)
                events = self.codex_events(primed)
                return await self._answer(turn, encoder, events, primed.ctx.label)
        refusal = web_refusal(req, history)
        if refusal is not None:
            raise refusal
        return await self._web(turn, bearer, account_header, response_id)

    async def retrieve(self, response_id: str, bearer: str | None) -> dict[str, Any]:
        return (await self._owned(response_id, bearer)).response

    async def input_items(self, response_id: str, bearer: str | None) -> dict[str, Any]:
        record = await self._owned(response_id, bearer)
        items = [dict(item) for item in record.input]
        for i, item in enumerate(items):
            item.setdefault("id", f"item_{record.id[5:21]}_{i}")
        return {
            "object": "list",
            "data": items,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None,
            "has_more": False,
        }

    async def delete(self, response_id: str, bearer: str | None) -> dict[str, Any]:
        await self._owned(response_id, bearer)
        await self.store.delete(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _owned(self, response_id: str, bearer: str | None) -> StoredResponse:
        record = await self.store.get(response_id)
        if record is None or not record.owned_by(owner_of(bearer)):
            raise NotFound(
                f"Response with id '{response_id}' not found.", param="response_id", code=None
            )
        return record

    # -- the Codex backend -----------------------------------------------------------

    async def prime_codex(
        self,
        req: ResponsesRequest,
        slug: str,
        history: list[dict[str, Any]],
        bearer: str | None,
        account_header: str | None,
        *,
        cache_key: str | None = None,
    ) -> CodexPrimed:
        """A primed Codex stream, retrying on other accounts (UseWebConversation: fall back).

        With ``auto``, accounts whose plan the Codex backend refuses for ``slug``
        (now, or remembered) are passed over; if no other account answers, the web
        conversation does.
        """
        session = self.accounts.session(bearer, account_header, None, model=CODEX_LIMIT_KEY)
        deadline = time.monotonic() + self.limits.total_timeout
        last_error: Chat2ApiError | None = None
        refused = False
        auto = self.mode == "auto"
        while (credential := await session.next()) is not None:
            if credential.access_token is None:
                raise UseWebConversation  # no account: the web conversation (anonymous)
            if auto and await self.pool.remembered(plan_key(slug), credential.entry_id):
                refused = True
                continue
            try:
                primed = await self._on_account(req, slug, history, credential, deadline, cache_key)
            except TimeoutError:
                await session.report(Outcome.TIMEOUT, detail="total deadline")
                raise UpstreamTimeout(
                    "the Codex backend did not answer within the total deadline"
                ) from None
            except Chat2ApiError as e:
                self.pool.note_codex(credential.entry_id, getattr(e, "limits", None))
                if auto and codex_reason(e) == PLAN_REFUSED:
                    log.info("Codex refused %r for %s: %s", credential, slug, e.message)
                    await self.pool.remember(
                        plan_key(slug), credential.entry_id, PLAN_MEMORY, e.message[:120]
                    )
                    refused = True
                    continue
                outcome = outcome_of(e)
                log.info(
                    "Codex attempt %d as %r failed: %s (%s)",
                    session.attempts,
                    credential,
                    e.message,
                    outcome.value if outcome else "not retried",
                )
                if outcome is None:
                    raise
                retry_after = getattr(e, "retry_after", None)
                await session.report(outcome, clears_in=retry_after, detail=e.message[:200])
                last_error = e
                continue
            await session.report(Outcome.OK)
            return primed
        if refused:
            raise UseWebConversation
        if last_error is None:
            raise UpstreamUnavailable("no account is available for this request")
        raise last_error

    async def _on_account(
        self,
        req: ResponsesRequest,
        slug: str,
        history: list[dict[str, Any]],
        credential: Credential,
        deadline: float,
        cache_key: str | None = None,
    ) -> CodexPrimed:
        """One account's attempt; sent again without reasoning items the backend
        cannot read (their encrypted content was made by another account)."""
        ctx = self.make_context(credential, self.rng)
        for keep_reasoning in (True, False):
            body = codex_body(
                req,
                slug=slug,
                history=history,
                keep_reasoning=keep_reasoning,
                cache_key=cache_key,
            )
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    return await self._attempt(ctx, body, deadline)
            except Chat2ApiError as e:
                if not keep_reasoning or codex_reason(e) != FOREIGN_REASONING:
                    raise
        raise AssertionError("unreachable")

    async def _attempt(
        self, ctx: TurnContext, body: dict[str, Any], deadline: float
    ) -> CodexPrimed:
        stream = await self.codex.open(ctx, body)
        self.pool.note_codex(ctx.credential.entry_id, limit_headers(stream.headers))
        primed = CodexPrimed(
            stream=stream, decoder=Decoder(), events=[], ctx=ctx, deadline=deadline
        )
        try:
            chunks = stream.chunks(idle_timeout=self._idle(deadline))
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    batch = primed.decoder.feed(chunk)
                    primed.events.extend(batch)  # (all of it: what follows is not read again)
                    if _primed(batch):
                        return primed
            primed.events.extend(primed.decoder.finish())
            if _primed(primed.events):
                return primed
            raise UpstreamError("the Codex backend stream ended before any answer")
        except BaseException:
            await stream.close()
            raise

    def _idle(self, deadline: float) -> float:
        return min(self.limits.idle_timeout, max(0.1, deadline - time.monotonic()))

    async def codex_events(self, primed: CodexPrimed) -> AsyncGenerator[Event, None]:
        """Every event of a primed stream; a broken stream raises (after what it sent)."""
        try:
            for event in primed.events:
                yield event
            decoder = primed.decoder
            async for chunk in primed.stream.chunks(idle_timeout=self._idle(primed.deadline)):
                for event in decoder.feed(chunk):
                    yield event
                if time.monotonic() > primed.deadline:
                    raise UpstreamTimeout("the answer took longer than the total deadline")
            for event in decoder.finish():
                yield event
        finally:
            await primed.stream.close()

    # -- the web conversation ---------------------------------------------------------

    async def _web(
        self, turn: _Turn, bearer: str | None, account_header: str | None, response_id: str
    ) -> Answer | Streamed:
        req, history = turn.req, turn.history
        raw = json.dumps(chat_body(req, history)).encode()
        chat = parse_chat_request(raw, max_body_bytes=max(len(raw), self.limits.max_body_bytes))
        model = resolve_model(self.web_models, req.model, unknown=self.unknown_model)
        blobs = None
        if self.media is not None:
            chat = self.media.prepare(chat)
            blobs = await self.media.fetch_all(chat)
        if needs_emulation(chat):  # function/custom tools or a text format: emulated
            if req.builtin_tools:
                log.info(
                    "built-in tools left out on the web conversation: %s",
                    ", ".join(sorted(set(req.builtin_tools))),
                )
            judged = await self.emulation.judged(
                chat, model, bearer=bearer, header_account_id=account_header, blobs=blobs
            )
            encoder = self._encoder(req, model.reported, response_id)
            emulated = turn_events(judged, req, chat, model.reported)
            return await self._answer(turn, encoder, emulated, "web")
        primed = await self.completions.prime(
            chat, model, bearer=bearer, header_account_id=account_header, blobs=blobs
        )
        completions = self.completions
        prompt_tokens = count_prompt_tokens(chat.messages, model.reported)

        async def events() -> AsyncGenerator[Event, None]:
            web = WebEvents()
            for event in web.start():
                yield event
            text: list[str] = []
            thought: list[str] = []
            async with contextlib.aclosing(completions.pieces(primed)) as pieces:
                async for piece in pieces:
                    if isinstance(piece, tr.Failure):
                        raise piece.error
                    if isinstance(piece, tr.Finish):
                        usage = _web_usage(prompt_tokens, text, thought, model.reported)
                        reason = {"length": "max_output_tokens", "content_filter": "content_filter"}
                        for event in web.finish(usage, incomplete=reason.get(piece.reason)):
                            yield event
                        return
                    content, reasoning = await completions.render(piece, primed)
                    if reasoning:
                        thought.append(reasoning)
                        for event in web.reasoning(reasoning):
                            yield event
                    if content:
                        text.append(content)
                        for event in web.text(content):
                            yield event

        encoder = self._encoder(req, model.reported, response_id)
        return await self._answer(turn, encoder, events(), primed.ctx.label)

    # -- the two answer shapes ----------------------------------------------------------

    def _encoder(self, req: ResponsesRequest, model: str, response_id: str) -> ResponseEncoder:
        return ResponseEncoder(response_id=response_id, model=model, echo=req.echo())

    async def _answer(
        self,
        turn: _Turn,
        encoder: ResponseEncoder,
        events: AsyncGenerator[Event, None],
        account: str,
    ) -> Answer | Streamed:
        if turn.req.stream:
            body = self._stream(turn, encoder, events)
            return Streamed(headers=dict(SSE_HEADERS), body=body, account=account)
        async with contextlib.aclosing(events) as stream:
            try:
                async for event in stream:
                    encoder.event(event)
                    if encoder.ended:
                        await _drain(stream)
                        break
            except Chat2ApiError as e:
                return error_answer(e)
        terminal = encoder.collector.terminal
        if terminal is None:
            return error_answer(
                UpstreamError("the Codex backend stream ended before the answer did")
            )
        if isinstance(terminal, Failed):
            return error_answer(failure_error(terminal.error))
        response = encoder.final()
        await self._save_quietly(turn, encoder)
        return Answer(
            status=200, headers={"content-type": "application/json"}, body=json_bytes(response)
        )

    async def _stream(
        self, turn: _Turn, encoder: ResponseEncoder, events: AsyncGenerator[Event, None]
    ) -> AsyncIterator[bytes]:
        """The client's SSE body: one terminal event, then the end."""
        async with contextlib.aclosing(events) as stream:
            try:
                async for event in stream:
                    data = encoder.event(event)
                    if encoder.ended:
                        # Stored before the client sees the end: its next request may
                        # name this response at once.
                        await self._save_quietly(turn, encoder)
                        yield data
                        await _drain(stream)
                        return
                    if data:
                        yield data
            except Chat2ApiError as e:
                log.info("the response stream failed: %s", e.message)
                yield encoder.fail(e.code or "server_error", e.message)
                return
        yield encoder.fail("server_error", "the backend stream ended before response.completed")

    async def _save_quietly(self, turn: _Turn, encoder: ResponseEncoder) -> None:
        if not turn.req.store or isinstance(encoder.collector.terminal, Failed):
            return
        try:
            await self._save(turn, encoder, encoder.final())
        except Chat2ApiError as e:  # the answer itself is fine: say so in the log
            log.warning("response %s was not stored: %s", encoder.response_id, e.message)

    async def _save(self, turn: _Turn, encoder: ResponseEncoder, response: dict[str, Any]) -> None:
        if not turn.req.store:
            return
        record = StoredResponse(
            id=encoder.response_id,
            owner=turn.owner,
            created=time.time(),
            input=[*turn.history, *turn.req.input],
            output=encoder.collector.output(),
            response=response,
            cache_key=turn.cache_key,
        )
        await self.store.put(record)


async def _drain(events: AsyncGenerator[Event, None]) -> None:
    """Read what follows the terminal event (normally just the end of the body), for
    a moment: a transfer that ends by itself leaves its connection open for the next
    request, one stopped early closes it."""
    with contextlib.suppress(Chat2ApiError, TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in events:
                pass


def _primed(events: list[Event]) -> bool:
    """Whether these events commit the attempt: output has come, or the end.

    A failure before any output raises instead, so another account may answer.
    """
    for event in events:
        if isinstance(event, Failed):
            raise failure_error(event.error)
        if isinstance(event, ItemAdded) or event.type.endswith(".delta"):
            return True
        if event.type in ("response.completed", "response.incomplete"):
            return True
    return False


def _web_usage(prompt: int, text: list[str], thought: list[str], model: str) -> dict[str, Any]:
    completion = count_text_tokens("".join(text), model)
    reasoning = count_text_tokens("".join(thought), model) if thought else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion + reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion + reasoning,
    }


__all__ = [
    "CODEX_LIMIT_KEY",
    "CodexPrimed",
    "ResponsesLimits",
    "ResponsesService",
    "Streamed",
    "UseWebConversation",
    "plan_key",
]
