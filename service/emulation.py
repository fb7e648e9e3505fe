"""Tools and structured output on the web conversation, which has neither.

The request is rewritten into our prompt protocol (:mod:`translator.toolcalls.protocol`) and
the answer text is read back with :class:`~translator.toolcalls.parser.CallParser`
(docs/tool-emulation.md). Two ways to answer:

* **live** (streamed, ``tool_choice`` ``auto`` or ``none``, no ``response_format``): text goes
  out as it comes, each call as soon as it is closed and checked. Prose is a valid answer here.
  An invalid call after text was sent ends the stream with an error event: never prose passed
  off as a call, never a call dropped in silence.
* **checked** (everything else): the whole turn is read first and judged: a required call
  missing (``required`` or a named function), an invalid call, a structured answer that is not
  the JSON asked for. One corrective turn follows (the bad reply and a user message saying what
  was wrong); if that fails too, an OpenAI-shaped 502 whose ``code`` names the failure. A good
  answer is then sent, streamed as OpenAI streams it or whole.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import string
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from errors import Chat2ApiError, EmulationFailed
from service.completions import Answer, CompletionService, Primed, usage_for
from service.uploads import Blobs
from translator import answer as tr
from translator import chunks as oa
from translator.models import ResolvedModel
from translator.options import Options
from translator.request import ChatRequest, Message, TextPart
from translator.responses.events import Event
from translator.responses.web import WebEvents
from translator.shaping import Shaper
from translator.toolcalls.parser import CallError, CallParser, ParsedCall
from translator.toolcalls.protocol import correction, emulate, render_call
from translator.toolcalls.responses import custom_input, custom_names
from translator.toolcalls.validate import Invalid, structured_answer
from translator.usage import count_prompt_tokens, count_text_tokens

log = logging.getLogger(__name__)

_ALNUM = string.ascii_letters + string.digits
# The web model believing it runs in ChatGPT's own sandbox (docs/tool-emulation.md).
_SANDBOX = re.compile(
    r"/mnt/data|\bsandbox\b|code interpreter|python (?:tool|environment)|"
    r"wrong tool usage attempt",
    re.IGNORECASE,
)


def call_id() -> str:
    return "call_" + "".join(_ALNUM[b % 62] for b in secrets.token_bytes(24))


def is_live(req: ChatRequest) -> bool:
    opts = req.options
    return req.stream and opts.response_format is None and not opts.call_required


@dataclass(kw_only=True)
class Turn:
    """One whole web turn read through the parser."""

    raw: list[str] = field(default_factory=list)  # the answer text as the model wrote it
    content: list[str] = field(default_factory=list)  # text outside calls
    reasoning: list[str] = field(default_factory=list)
    calls: list[ParsedCall] = field(default_factory=list)
    errors: list[CallError] = field(default_factory=list)
    finish: str = "stop"
    conversation_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.content)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    kind: str  # sandbox, missing_call, call, format
    code: str
    detail: str
    fatal: bool = True  # False: retry once, but the answer stands if the retry fails too


class Emulation:
    def __init__(self, completions: CompletionService) -> None:
        self.completions = completions

    # ---------------------------------------------------------------- entry points

    async def stream_live(
        self, req: ChatRequest, model: ResolvedModel, primed: Primed, *, show_ids: bool
    ) -> AsyncIterator[bytes]:
        """Text at once, calls as they close; ``req`` is the client's request."""
        opts = req.options
        svc = self.completions
        encoder = svc.encoder(req, model, primed.reported(model))
        shaper = Shaper(stop=opts.stop, max_tokens=req.max_tokens, model=model.reported)
        parser = CallParser({t.name: t for t in opts.tools}) if opts.calls_allowed else None
        content: list[str] = []
        reasoning: list[str] = []
        calls = 0
        async with contextlib.aclosing(svc.pieces(primed)) as pieces:
            async for piece in pieces:
                if isinstance(piece, tr.Failure):
                    yield encoder.error(piece.error)
                    return
                if isinstance(piece, tr.Meta):
                    if show_ids and piece.conversation_id:
                        encoder.set_field("conversation_id", piece.conversation_id)
                    continue
                ended = isinstance(piece, tr.Finish)
                if ended:
                    text, thought = "", ""
                else:
                    text, thought = await svc.render(piece, primed)
                thought = shaper.reasoning(thought)
                if thought:
                    reasoning.append(thought)
                    yield encoder.reasoning(thought)
                items: list[Any] = [text] if parser is None else parser.feed(text)
                if ended and parser is not None:
                    items += parser.finish()
                for item in items:
                    if isinstance(item, CallError):
                        log.info("invalid tool call in a streamed answer: %s", item.message)
                        yield encoder.error(_failure(item.code, item.message, retried=False))
                        return
                    if isinstance(item, ParsedCall):
                        if calls and not opts.parallel_tool_calls:
                            log.info(
                                "extra call to %s dropped: parallel_tool_calls is false", item.name
                            )
                            continue
                        content.append(render_call(item.name, item.arguments))
                        yield self._call_chunk(encoder, opts, calls, item)
                        calls += 1
                        continue
                    out = shaper.content(item)
                    if out:
                        content.append(out)
                        yield encoder.content(out)
                if ended or (shaper.reason is not None and not calls):
                    rest = shaper.flush()
                    if rest:
                        content.append(rest)
                        yield encoder.content(rest)
                    reason = _finish_reason(opts, calls, shaper.reason, piece)
                    yield encoder.finish(reason, usage_for(req, model, content, reasoning))
                    return

    async def checked(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        *,
        bearer: str | None,
        header_account_id: str | None,
        blobs: Blobs | None,
        show_ids: bool,
    ) -> Answer | AsyncIterator[bytes]:
        """Read, judge, correct once; then the answer (bytes of a stream, or a whole body)."""
        turn = await self.judged(
            req, model, bearer=bearer, header_account_id=header_account_id, blobs=blobs
        )
        return self._deliver(req, model, turn, show_ids=show_ids)

    async def judged(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        *,
        bearer: str | None,
        header_account_id: str | None,
        blobs: Blobs | None,
    ) -> Turn:
        """A whole turn that passed judgement, after at most one corrective turn, or
        EmulationFailed naming what was still wrong."""
        ereq = emulate(req)
        turn = await self._turn(ereq, model, bearer, header_account_id, blobs)
        verdict = judge(turn, req.options)
        if verdict is not None:
            log.info(
                "emulated answer rejected (%s): %s; asking once more", verdict.code, verdict.detail
            )
            retry = _corrected(ereq, turn, verdict, req.options)
            turn = await self._turn(retry, model, bearer, header_account_id, blobs)
            again = judge(turn, req.options)
            if again is not None and again.fatal:
                raise _failure(again.code, again.detail, retried=True)
        return turn

    # ---------------------------------------------------------------- turns

    async def _turn(
        self,
        ereq: ChatRequest,
        model: ResolvedModel,
        bearer: str | None,
        header_account_id: str | None,
        blobs: Blobs | None,
    ) -> Turn:
        svc = self.completions
        primed = await svc.prime(
            ereq, model, bearer=bearer, header_account_id=header_account_id, blobs=blobs
        )
        opts = ereq.options
        parser = CallParser({t.name: t for t in opts.tools}) if opts.calls_allowed else None
        turn = Turn()

        def take(items: list[Any]) -> None:
            for item in items:
                if isinstance(item, ParsedCall):
                    turn.calls.append(item)
                elif isinstance(item, CallError):
                    turn.errors.append(item)
                elif item:
                    turn.content.append(item)

        async with contextlib.aclosing(svc.pieces(primed)) as pieces:
            async for piece in pieces:
                if isinstance(piece, tr.Failure):
                    raise piece.error
                if isinstance(piece, tr.Meta):
                    turn.conversation_id = piece.conversation_id or turn.conversation_id
                    continue
                if isinstance(piece, tr.Finish):
                    turn.finish = piece.reason
                    if parser is not None:
                        take(parser.finish())
                    return turn
                text, thought = await svc.render(piece, primed)
                if thought:
                    turn.reasoning.append(thought)
                if text:
                    turn.raw.append(text)
                    take([text] if parser is None else parser.feed(text))
        raise _failure(
            "backend_incomplete",
            "the ChatGPT backend stream ended without an answer",
            retried=False,
        )

    # ---------------------------------------------------------------- answers

    def _deliver(
        self, req: ChatRequest, model: ResolvedModel, turn: Turn, *, show_ids: bool
    ) -> Answer | AsyncIterator[bytes]:
        opts = req.options
        calls = turn.calls if opts.parallel_tool_calls else turn.calls[:1]
        shaper = Shaper(stop=opts.stop, max_tokens=req.max_tokens, model=model.reported)
        text = turn.text
        if not calls and opts.response_format is not None:
            text = structured_answer(opts.response_format, text)  # judged already: valid
        reasoning = shaper.reasoning("".join(turn.reasoning))
        text = shaper.content(text) + shaper.flush()
        counted = [text, *(render_call(c.name, c.arguments) for c in calls)]
        usage = usage_for(req, model, counted, [reasoning])
        reason = "function_call" if calls and opts.legacy_functions else "tool_calls"
        reason = reason if calls else shaper.reason or turn.finish
        extra = (
            {"conversation_id": turn.conversation_id} if show_ids and turn.conversation_id else {}
        )
        if req.stream:
            return self._replay(req, model, text, reasoning, calls, reason, usage, extra)
        agg = self.completions.aggregator(model)
        agg.extra_fields.update(extra)
        if reasoning:
            agg.reasoning(reasoning)
        if text:
            agg.content(text)
        for call in calls:
            if opts.legacy_functions:
                agg.function_call = {"name": call.name, "arguments": call.arguments}
                break
            agg.tool_call(call_id(), call.name, call.arguments)
        agg.finish(reason)
        body = oa.json_bytes(agg.build(usage))
        return Answer(status=200, headers={"content-type": "application/json"}, body=body)

    async def _replay(
        self,
        req: ChatRequest,
        model: ResolvedModel,
        text: str,
        reasoning: str,
        calls: list[ParsedCall],
        reason: str,
        usage: oa.Usage,
        extra: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        encoder = self.completions.encoder(req, model)
        for key, value in extra.items():
            encoder.set_field(key, value)
        if reasoning:
            yield encoder.reasoning(reasoning)
        if text:
            yield encoder.content(text)
        for index, call in enumerate(calls):
            yield self._call_chunk(encoder, req.options, index, call)
        yield encoder.finish(reason, usage)

    @staticmethod
    def _call_chunk(encoder: oa.ChunkEncoder, opts: Options, index: int, call: ParsedCall) -> bytes:
        if opts.legacy_functions:
            return encoder.function_call(call.name, call.pieces)
        return encoder.tool_call(index, call_id(), call.name, call.pieces)


def judge(turn: Turn, opts: Options) -> Verdict | None:
    """What is wrong with a whole answer, or None."""
    if turn.errors:
        err = turn.errors[0]
        return Verdict(kind="call", code=err.code, detail=err.message)
    choice = opts.tool_choice
    if choice.mode == "named":
        wrong = next((c for c in turn.calls if c.name != choice.name), None)
        if wrong is not None:
            return Verdict(
                kind="call",
                code="tool_call_wrong_tool",
                detail=f"it called {wrong.name!r}, but this reply must call {choice.name!r}",
            )
    if turn.calls:
        return None
    text = "".join(turn.raw)
    sandbox = _SANDBOX.search(text) is not None
    if opts.call_required:
        # (ChatGPT's own tool traffic is reasoning while tools are emulated: look there too.)
        sandbox = sandbox or _SANDBOX.search("".join(turn.reasoning)) is not None
        return Verdict(
            kind="sandbox" if sandbox else "missing_call",
            code="tool_call_missing",
            detail="the model answered in prose instead of calling a tool",
        )
    if opts.response_format is not None:
        try:
            structured_answer(opts.response_format, turn.text)
        except Invalid as e:
            return Verdict(kind="format", code=e.code, detail=e.message)
        return None
    if sandbox and opts.calls_allowed:
        return Verdict(
            kind="sandbox", code="tool_call_sandbox", detail="sandbox confusion", fatal=False
        )
    return None


def _corrected(ereq: ChatRequest, turn: Turn, verdict: Verdict, opts: Options) -> ChatRequest:
    said = "".join(turn.raw).strip() or "(an empty reply)"
    note = correction(verdict.kind, verdict.detail, opts)
    messages = (
        *ereq.messages,
        Message(role="assistant", content=(TextPart(text=said),)),
        Message(role="user", content=(TextPart(text=note),)),
    )
    # The correction continues the same prompt; a conversation id would fork the chat.
    return replace(ereq, messages=messages, conversation_id=None, parent_message_id=None)


def _finish_reason(opts: Options, calls: int, cut: str | None, piece: Any) -> str:
    if calls:
        return "function_call" if opts.legacy_functions else "tool_calls"
    if cut is not None:
        return cut
    return piece.reason if isinstance(piece, tr.Finish) else "stop"


def _failure(code: str, detail: str, *, retried: bool) -> Chat2ApiError:
    again = " chat2api asked once more, and the answer was still not valid." if retried else ""
    return EmulationFailed(f"The model's answer could not be used: {detail}.{again}", code=code)


async def turn_events(
    turn: Turn, req: Any, chat: ChatRequest, model: str
) -> AsyncGenerator[Event, None]:
    """A judged web turn as ``/v1/responses`` events: reasoning, text, one item per call
    (a ``custom_tool_call`` for the request's custom tools), then the end."""
    web = WebEvents()
    for event in web.start():
        yield event
    opts = chat.options
    reasoning = "".join(turn.reasoning)
    for event in web.reasoning(reasoning):
        yield event
    text = turn.text
    if not turn.calls and opts.response_format is not None:
        text = structured_answer(opts.response_format, text)
    for event in web.text(text):
        yield event
    custom = custom_names(req)
    calls = turn.calls if opts.parallel_tool_calls else turn.calls[:1]
    for call in calls:
        if call.name in custom:
            given = custom_input(call.arguments)
            pieces = tuple(given[i : i + 64] for i in range(0, len(given), 64)) or ("",)
            events = web.call(call_id(), call.name, pieces, custom=True)
        else:
            events = web.call(call_id(), call.name, call.pieces)
        for event in events:
            yield event
    prompt = count_prompt_tokens(chat.messages, model)
    output = count_text_tokens(text + "".join(c.arguments for c in calls), model)
    thought = count_text_tokens(reasoning, model) if reasoning else 0
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output + thought,
        "output_tokens_details": {"reasoning_tokens": thought},
        "total_tokens": prompt + output + thought,
    }
    incomplete = "max_output_tokens" if turn.finish == "length" and not calls else None
    for event in web.finish(usage, incomplete=incomplete):
        yield event
