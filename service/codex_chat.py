"""``/v1/chat/completions`` answered by the Codex backend.

Which requests: with ``CODEX_BACKEND`` ``always`` every chat completion that has an account;
with ``auto`` those that ask for what the web conversation can only emulate (tools, legacy
functions, a ``response_format``); with ``never`` none. The Codex client, the retries over
accounts, the plan memory and the event decoder are the responses path's
(``service/responses.py``); this module maps the request (``translator/codex_chat.py``) and
writes the events as chat chunks. When the Codex backend cannot answer (no account, the plan
has no Codex for the model), the web conversation answers instead, with emulated tools.

The model: a name the Codex table knows is used as it is; any other name (``gpt-4o``) is
answered by the table's default model, and the answer's ``model`` says which. ``stop`` and
``max_tokens``, which the backend refuses, are applied here as on the web path.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from errors import Chat2ApiError, ModelNotFound, UpstreamError
from service.completions import Answer, CompletionService, error_answer, usage_for
from service.responses import ResponsesService, UseWebConversation
from settings.model_table import ModelTable
from translator import chunks as oa
from translator.codex_chat import CallArgs, CallStart, ChatEvents, End, chat_usage, responses_body
from translator.models import ResolvedModel, resolve_model
from translator.request import ChatRequest
from translator.responses.events import Event, Failed
from translator.responses.request import parse_responses_request
from translator.shaping import Shaper
from upstream.codex import failure_error

log = logging.getLogger(__name__)


class CodexChat:
    def __init__(
        self,
        *,
        responses: ResponsesService,
        completions: CompletionService,
        web_models: ModelTable,
        codex_models: ModelTable,
        unknown_model: str,
        mode: str,
    ) -> None:
        self.responses = responses
        self.completions = completions
        self.web_models = web_models
        self.codex_models = codex_models
        self.unknown_model = unknown_model
        self.mode = mode

    def wanted(self, req: ChatRequest) -> bool:
        if self.mode == "always":
            return True
        opts = req.options
        return self.mode == "auto" and (bool(opts.tools) or opts.response_format is not None)

    def model_for(self, name: str) -> ResolvedModel:
        try:
            return resolve_model(self.codex_models, name, unknown="reject")
        except ModelNotFound:
            pass
        # Not a Codex model: refused as on the web path when unknown there too, else mapped.
        resolve_model(self.web_models, name, unknown=self.unknown_model)
        model = resolve_model(self.codex_models, name, unknown="default")
        log.info("model %r answered by the Codex model %s", name, model.reported)
        return model

    async def answer(
        self, req: ChatRequest, *, bearer: str | None, account: str | None
    ) -> tuple[Answer | AsyncIterator[bytes], str] | None:
        """The answer and the account label, or None: the web conversation answers."""
        model = self.model_for(req.model)
        body = json.dumps(responses_body(req, model=model.slug)).encode()
        rreq = parse_responses_request(body, max_body_bytes=len(body) + 1)
        try:
            primed = await self.responses.prime_codex(rreq, model.slug, [], bearer, account)
        except UseWebConversation:
            log.info("the Codex backend cannot answer this chat request: the web path answers")
            return None
        events = self.responses.codex_events(primed)
        if req.stream:
            return self._stream(req, model, events), primed.ctx.label
        return await self._whole(req, model, events), primed.ctx.label

    async def _stream(
        self, req: ChatRequest, model: ResolvedModel, events: AsyncGenerator[Event, None]
    ) -> AsyncIterator[bytes]:
        opts = req.options
        encoder = self.completions.encoder(req, model)
        shaper = Shaper(stop=opts.stop, max_tokens=req.max_tokens, model=model.reported)
        chat = ChatEvents()
        content: list[str] = []
        reasoning: list[str] = []
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, Failed):
                        yield encoder.error(failure_error(event.error))
                        return
                    for out in chat.feed(event):
                        if isinstance(out, str):
                            text = shaper.content(out)
                            if text:
                                content.append(text)
                                yield encoder.content(text)
                        elif isinstance(out, tuple):
                            thought = shaper.reasoning(out[1])
                            if thought:
                                reasoning.append(thought)
                                yield encoder.reasoning(thought)
                        elif isinstance(out, CallStart):
                            yield _start(encoder, opts.legacy_functions, out)
                        elif isinstance(out, CallArgs):
                            content.append(out.delta)
                            yield _args(encoder, opts.legacy_functions, out)
                        elif isinstance(out, End):
                            rest = shaper.flush()
                            if rest:
                                content.append(rest)
                                yield encoder.content(rest)
                            usage = self._usage(req, model, out, shaper, content, reasoning)
                            yield encoder.finish(_reason(out, shaper, chat, opts), usage)
                            return
                    if shaper.reason is not None and not chat.calls:
                        usage = usage_for(req, model, content, reasoning)
                        yield encoder.finish(shaper.reason, usage)
                        return  # leaving the loop closes the backend stream
        except Chat2ApiError as e:
            log.info("the Codex chat stream failed: %s", e.message)
            yield encoder.error(e)
            return
        yield encoder.error(UpstreamError("the Codex backend stream ended before the answer did"))

    async def _whole(
        self, req: ChatRequest, model: ResolvedModel, events: AsyncGenerator[Event, None]
    ) -> Answer:
        opts = req.options
        agg = self.completions.aggregator(model)
        shaper = Shaper(stop=opts.stop, max_tokens=req.max_tokens, model=model.reported)
        chat = ChatEvents()
        calls: list[list[str]] = []  # [call_id, name, arguments]
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, Failed):
                        return error_answer(failure_error(event.error))
                    for out in chat.feed(event):
                        if isinstance(out, str):
                            agg.content(shaper.content(out))
                        elif isinstance(out, tuple):
                            agg.reasoning(shaper.reasoning(out[1]))
                        elif isinstance(out, CallStart):
                            calls.append([out.call_id, out.name, ""])
                        elif isinstance(out, CallArgs):
                            calls[out.index][2] += out.delta
                        elif isinstance(out, End):
                            agg.content(shaper.flush())
                            return self._built(req, model, agg, calls, out, shaper, chat)
                    if shaper.reason is not None and not chat.calls:
                        end = End(shaper.reason, None)
                        return self._built(req, model, agg, calls, end, shaper, chat)
        except Chat2ApiError as e:
            return error_answer(e)
        return error_answer(UpstreamError("the Codex backend stream ended before the answer did"))

    def _built(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        agg: oa.CompletionAggregator,
        calls: list[list[str]],
        end: End,
        shaper: Shaper,
        chat: ChatEvents,
    ) -> Answer:
        opts = req.options
        if opts.legacy_functions and calls:
            agg.function_call = {"name": calls[0][1], "arguments": calls[0][2]}
        else:
            for call_id, name, arguments in calls:
                agg.tool_call(call_id, name, arguments)
        agg.finish(_reason(end, shaper, chat, opts))
        counted = [agg.text, *(c[2] for c in calls)]
        usage = self._usage(req, model, end, shaper, counted, [agg.reasoning_text])
        body = oa.json_bytes(agg.build(usage))
        return Answer(status=200, headers={"content-type": "application/json"}, body=body)

    @staticmethod
    def _usage(
        req: ChatRequest,
        model: ResolvedModel,
        end: End,
        shaper: Shaper,
        content: list[str],
        reasoning: list[str],
    ) -> oa.Usage:
        counted = chat_usage(end.usage)
        if counted is None or shaper.reason is not None:  # cut here: count what was sent
            return usage_for(req, model, content, reasoning)
        return oa.Usage(
            prompt_tokens=counted["prompt_tokens"],
            completion_tokens=counted["completion_tokens"],
            reasoning_tokens=counted["reasoning_tokens"],
            cached_tokens=counted["cached_tokens"],
        )


def _start(encoder: oa.ChunkEncoder, legacy: bool, out: CallStart) -> bytes:
    if legacy:
        return encoder.function_start(out.name) if out.index == 0 else b""
    return encoder.call_start(out.index, out.call_id, out.name)


def _args(encoder: oa.ChunkEncoder, legacy: bool, out: CallArgs) -> bytes:
    if legacy:
        return encoder.function_args(out.delta) if out.index == 0 else b""
    return encoder.call_args(out.index, out.delta)


def _reason(end: End, shaper: Shaper, chat: ChatEvents, opts: Any) -> str:
    if chat.calls:
        return "function_call" if opts.legacy_functions else "tool_calls"
    return shaper.reason or end.reason
