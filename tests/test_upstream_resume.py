"""Resuming a broken 2026 stream inside the completion service, against scripted streams.

The stream is the emulator's own rendering of a turn, cut where a test wants it; the dialect's
resumer serves the rest from the offset it is asked for, like ``/f/conversation/resume``. The
answer the client gets must be whole, exactly once, wherever the cut falls, also in the middle
of an event.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from accounts.pool import Credential, Source
from errors import UpstreamError, UpstreamTimeout
from service.completions import CompletionService, Limits, Primed
from tests.fakechatgpt import streams
from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.conversation import hand_off
from tests.fakechatgpt.faults import Plan
from translator import answer as tr
from translator.stream import Translation
from upstream.context import make_context
from upstream.dialect import ResumeRefused, Turn

CID = "0f0e0d0c-0b0a-4000-8000-000000000001"
PROMPT = "resume me"
ANSWER = expected_answer(PROMPT, "gpt-4o")


def rendered() -> list[streams.Chunk]:
    turn = streams.Turn(
        conversation_id=CID,
        model="gpt-4o",
        prompt=PROMPT,
        user_message={
            "id": "u1",
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": [PROMPT]},
            "metadata": {},
        },
        answer=ANSWER,
        resume_token="rt-1",
    )
    return streams.render_v1(streams.build_turn(turn).steps)


@dataclass
class Cut:
    """A stream of ``data`` that, after it, breaks (``error``) or just ends."""

    data: bytes
    error: Exception | None = None
    closed: bool = False
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    async def chunks(self, *, idle_timeout: float) -> AsyncIterator[bytes]:
        # Odd-sized pieces: event boundaries fall inside chunks.
        for i in range(0, len(self.data), 7):
            yield self.data[i : i + 7]
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


class Backend:
    """Serves the rendered turn; ``cuts`` are the byte counts after which each stream breaks."""

    def __init__(self, cuts: list[int], *, error: Exception | None = None) -> None:
        self.chunks = rendered()
        self.cuts = list(cuts)
        self.error = error
        self.offsets: list[int] = []
        self.refuse: Exception | None = None
        self.streams: list[Cut] = []

    def _stream(self, offset: int) -> Cut:
        seen, rest = 0, b""
        for i, chunk in enumerate(self.chunks):
            if seen == offset:
                rest = b"".join(c.data for c in self.chunks[i:])
                break
            seen += chunk.counted
        if self.cuts:
            stream = Cut(rest[: self.cuts.pop(0)], error=self.error)
        else:
            stream = Cut(rest)
        self.streams.append(stream)
        return stream

    def turn(self) -> Turn:
        async def resumer(*, conversation_id: str, offset: int, token: str) -> Any:
            assert conversation_id == CID and token == "rt-1"
            self.offsets.append(offset)
            if self.refuse is not None:
                raise self.refuse
            return self._stream(offset)

        return Turn(stream=self._stream(0), wire="2026", resumer=resumer)  # type: ignore[arg-type]


def service(resume_attempts: int = 3) -> CompletionService:
    svc = CompletionService(
        accounts=None,  # type: ignore[arg-type]
        dialect=None,  # type: ignore[arg-type]
        make_context=None,  # type: ignore[arg-type]
        build_body=None,  # type: ignore[arg-type]
        media=None,  # type: ignore[arg-type]
        limits=Limits(
            retry_times=0,
            idle_timeout=5,
            total_timeout=30,
            inline_reasoning=False,
            resume_attempts=resume_attempts,
        ),
    )
    svc.rng = random.Random(0)
    return svc


def run(backend: Backend, svc: CompletionService | None = None) -> tuple[str, Any]:
    """Everything the client would get: (text, the terminal piece)."""
    svc = svc or service()
    turn = backend.turn()
    ctx = make_context(
        origins=("https://chatgpt.example",),
        credential=Credential(source=Source.ANONYMOUS),
        language="en-US",
        auth_key=None,
        proxy=None,
        rng=random.Random(1),
    )

    async def go() -> tuple[str, Any]:
        primed = Primed(
            stream=turn.stream,
            turn=turn,
            translation=Translation(),
            pieces=[],
            ctx=ctx,
            credential=ctx.credential,
            deadline=time.monotonic() + 30,
        )
        text, last = "", None
        async for piece in svc.pieces(primed):
            if isinstance(piece, tr.Text):
                text += piece.text
            last = piece
        return text, last

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    real = asyncio.sleep

    async def instant(delay: float, *a: Any) -> Any:
        return await real(0)

    monkeypatch.setattr("service.completions.asyncio.sleep", instant)


def total_bytes() -> int:
    return sum(len(c.data) for c in rendered())


@pytest.mark.parametrize("error", [None, UpstreamError("broke"), UpstreamTimeout("stalled")])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.97])
def test_a_cut_anywhere_is_resumed_exactly_once(fraction: float, error: Exception | None) -> None:
    cut = int(total_bytes() * fraction)
    backend = Backend([cut], error=error)
    text, last = run(backend)
    assert text == ANSWER
    assert isinstance(last, tr.Finish)
    assert len(backend.offsets) == 1
    assert backend.streams[0].closed


def test_every_cut_position_gives_the_whole_answer() -> None:
    chunks = rendered()
    token_end = next(
        sum(len(c.data) for c in chunks[: i + 1])
        for i, c in enumerate(chunks)
        if b"resume_conversation_token" in c.data
    )
    total = total_bytes()
    for cut in range(token_end, total, max(1, total // 80)):
        backend = Backend([cut], error=UpstreamError("broke"))
        text, last = run(backend)
        assert (text, type(last)) == (ANSWER, tr.Finish), cut


def test_several_breaks_each_resumed_from_the_new_offset() -> None:
    step = total_bytes() // 5
    backend = Backend([step, step, step], error=UpstreamError("broke"))
    text, last = run(backend)
    assert text == ANSWER and isinstance(last, tr.Finish)
    assert len(backend.offsets) == 3
    assert backend.offsets == sorted(backend.offsets) and len(set(backend.offsets)) == 3


def test_failures_in_a_row_are_bounded() -> None:
    cut = total_bytes() // 2
    # The first stream breaks half way; every resumed one breaks before its first event.
    backend = Backend([cut] + [3] * 10, error=UpstreamError("broke"))
    text, last = run(backend, service(resume_attempts=3))
    assert isinstance(last, tr.Failure)
    assert last.error.message == "broke"
    assert ANSWER.startswith(text) and text != ANSWER
    assert len(backend.offsets) == 3


def test_a_refused_resume_is_not_retried_and_the_break_stands() -> None:
    backend = Backend([total_bytes() // 2], error=UpstreamError("broke"))
    backend.refuse = ResumeRefused("no (HTTP 404)")
    text, last = run(backend)
    assert isinstance(last, tr.Failure) and last.error.message == "broke"
    assert len(backend.offsets) == 1


def test_transient_resume_errors_are_retried() -> None:
    backend = Backend([total_bytes() // 2], error=UpstreamError("broke"))
    failures = [UpstreamError("HTTP 502"), UpstreamTimeout("slow")]
    original = backend.turn

    def turn() -> Turn:
        t = original()
        resumer = t.resumer
        assert resumer is not None

        async def flaky(**kw: Any) -> Any:
            if failures:
                backend.offsets.append(kw["offset"])
                raise failures.pop(0)
            return await resumer(**kw)

        t.resumer = flaky
        return t

    backend.turn = turn  # type: ignore[method-assign]
    text, last = run(backend)
    assert text == ANSWER and isinstance(last, tr.Finish)
    assert len(backend.offsets) == 3


def test_a_break_before_the_resume_token_is_not_resumed() -> None:
    backend = Backend([5], error=UpstreamError("broke"))
    text, last = run(backend)
    assert isinstance(last, tr.Failure) and last.error.message == "broke"
    assert backend.offsets == []


def test_resume_attempts_zero_and_classic_turns_do_not_resume() -> None:
    backend = Backend([total_bytes() // 2])
    text, last = run(backend, service(resume_attempts=0))
    assert isinstance(last, tr.Failure) and backend.offsets == []
    backend = Backend([total_bytes() // 2], error=UpstreamError("broke"))
    original = backend.turn
    backend.turn = lambda: Turn(stream=original().stream, wire="classic")  # type: ignore[method-assign]
    text, last = run(backend)
    assert isinstance(last, tr.Failure) and last.error.message == "broke"


# -- stream handoff (docs/stream-handoff.md) ---------------------------------------------------


class Handoff(Backend):
    """The first stream hands off after ``after`` events; resume serves the rest from 0."""

    def __init__(self, after: int, cuts: list[int] | None = None) -> None:
        super().__init__(cuts or [], error=UpstreamError("broke"))
        plan = Plan(handoff_after_events=after)
        self.first, self.chunks = hand_off(rendered(), plan, CID)

    def turn(self) -> Turn:
        cuts, self.cuts = self.cuts, []
        turn = super().turn()  # its first stream is replaced: the cuts are for the rest
        self.cuts, self.streams = cuts, []
        turn.stream = Cut(b"".join(c.data for c in self.first))  # type: ignore[assignment]
        return turn


@pytest.mark.parametrize("after", [2, 6, 20, 40])
def test_a_handed_off_turn_is_followed_from_offset_0(after: int) -> None:
    backend = Handoff(after)
    text, last = run(backend)
    assert text == ANSWER and last == tr.Finish(reason="stop")
    assert backend.offsets == [0]


def test_a_break_in_the_followed_stream_is_resumed_in_its_own_count() -> None:
    backend = Handoff(6, cuts=[total_bytes() // 2])
    text, last = run(backend)
    assert text == ANSWER and last == tr.Finish(reason="stop")
    assert backend.offsets[0] == 0 and len(backend.offsets) == 2 and backend.offsets[1] > 0


def test_a_handoff_without_a_resumer_is_an_honest_failure() -> None:
    backend = Handoff(20)
    turn = backend.turn()
    turn.resumer = None
    backend.turn = lambda: turn  # type: ignore[method-assign]
    text, last = run(backend)
    assert isinstance(last, tr.Failure) and "cannot follow" in last.error.message
    assert ANSWER.startswith(text)


def test_a_refused_handoff_names_it() -> None:
    backend = Handoff(20)
    backend.refuse = ResumeRefused("404")
    text, last = run(backend)
    assert isinstance(last, tr.Failure) and "handed the answer off" in last.error.message


def test_a_handoff_is_followed_with_resuming_turned_off() -> None:
    backend = Handoff(20)
    text, last = run(backend, service(resume_attempts=0))
    assert text == ANSWER and last == tr.Finish(reason="stop") and backend.offsets == [0]
