"""The whole stream translator: backend SSE bytes in, visible pieces out.

``Translation`` chains :class:`translator.sse.EventStream`,
:class:`translator.backend.BackendDecoder` and
:class:`translator.answer.AnswerExtractor`. It is sans-I/O: the caller feeds
the bytes it read and calls :meth:`Translation.finish` at upstream EOF, then
encodes the pieces with :mod:`translator.chunks`.

Contract: :meth:`Translation.finish` always ends the piece sequence with exactly
one of :class:`Finish`, :class:`Failure` or :class:`Pending` (unless one came
earlier from :meth:`feed`), and no exception ever escapes ``feed``/``finish``.
"""

from __future__ import annotations

import logging

from errors import Chat2ApiError
from translator.answer import (
    AnswerExtractor,
    Failure,
    Finish,
    Pending,
    Piece,
    Reasoning,
    Text,
)
from translator.backend import BackendDecoder, Handoff, ResumeToken
from translator.sse import EventStream

__all__ = ["Translation", "translate_all"]

log = logging.getLogger(__name__)


class Translation:
    """One answer stream. ``inline_reasoning`` also renders reasoning into the
    text as a markdown quote (for clients that show only ``content``)."""

    def __init__(self, *, inline_reasoning: bool = False, quiet_tools: bool = False) -> None:
        self._events = EventStream()
        self._backend = BackendDecoder()
        self._answer = AnswerExtractor(quiet_tools=quiet_tools)
        self._inline = inline_reasoning
        self._quote_open = False  # inline reasoning quote in progress
        self._line_start = True
        self.resume_token: ResumeToken | None = None
        self.closed = False

    # ---------------------------------------------------------------- state

    @property
    def events_consumed(self) -> int:
        """SSE events consumed, as the 2026 resume ``offset`` counts them."""
        return self._backend.events_consumed

    @property
    def conversation_id(self) -> str | None:
        return self._answer.conversation_id or self._backend.conversation_id

    @property
    def message_id(self) -> str | None:
        return self._answer.message_id

    @property
    def title(self) -> str | None:
        return self._answer.title

    @property
    def model_slug(self) -> str | None:
        """The model the answer says it came from, once a message named it."""
        return self._answer.model_slug

    @property
    def model_adjustments(self) -> tuple[str, ...]:
        return self._answer.model_adjustments

    @property
    def saw_done(self) -> bool:
        return self._backend.done

    @property
    def finished(self) -> bool:
        """A terminal piece (Finish, Failure or Pending) was produced."""
        return self._answer.finished

    # ---------------------------------------------------------------- feeding

    def feed(self, data: bytes) -> list[Piece]:
        if self._answer.finished or self.closed:
            return []
        try:
            events = self._events.feed_pairs(data)
        except Chat2ApiError as exc:
            return self._abort(exc)
        except Exception:  # a bug must not leave the client hanging
            log.exception("stream translator failed")
            return self._abort(Chat2ApiError("internal error while translating the stream"))
        return self._events_to_pieces(events)

    def finish(self) -> list[Piece]:
        """Upstream EOF."""
        if self.closed:
            return []
        out: list[Piece] = []
        if not self._answer.finished:
            try:
                out = self._events_to_pieces([(e.event, e.data) for e in self._events.flush()])
            except Chat2ApiError as exc:
                out = self._abort(exc)
            except Exception:
                log.exception("stream translator failed")
                out = self._abort(Chat2ApiError("internal error while translating the stream"))
        if not self._answer.finished:
            try:
                out += self._wrap(self._answer.end_of_stream(saw_done=self._backend.done))
            except Exception:
                log.exception("stream translator failed")
                out += self._abort(Chat2ApiError("internal error while translating the stream"))
        self.closed = True
        return out

    def resume(self) -> None:
        """The caller is about to feed a resumed stream (``/f/conversation/resume``
        at :attr:`events_consumed`): forget a half-read line, keep the documents."""
        self._events = EventStream()

    @property
    def handoff(self) -> Handoff | None:
        """The ``stream_handoff`` of this stream when the turn goes on elsewhere: the
        stream ended in it (a Pending piece), or is still open after it."""
        answer = self._answer
        if answer.handoff is not None and (answer.handed_off or not answer.finished):
            return answer.handoff
        return None

    def follow_handoff(self) -> None:
        """The caller is about to feed the stream the turn was handed off to
        (``/f/conversation/resume`` at offset 0, docs/stream-handoff.md): counted
        from 0 again, the documents and what was already shown kept."""
        self._events = EventStream()
        self._backend.follow_handoff()
        self._answer.follow_handoff()
        self.closed = False

    # ---------------------------------------------------------------- internals

    def _abort(self, err: Chat2ApiError) -> list[Piece]:
        if self._answer.finished:
            return []
        self._answer.finished = True
        return [Failure(error=err)]

    def _events_to_pieces(self, events: list[tuple[str, str]]) -> list[Piece]:
        out: list[Piece] = []
        backend = self._backend
        answer = self._answer
        try:
            for name, data in events:
                for bev in backend.feed_raw(name, data):
                    if isinstance(bev, ResumeToken):
                        self.resume_token = bev
                    pieces = answer.feed(bev)
                    if pieces:
                        out += pieces
                if answer.finished:
                    break
        except Exception:
            log.exception("stream translator failed")
            out += self._abort(Chat2ApiError("internal error while translating the stream"))
        return self._wrap(out) if self._inline else out

    def _wrap(self, pieces: list[Piece]) -> list[Piece]:
        if not self._inline:
            return pieces
        out: list[Piece] = []
        for piece in pieces:
            if isinstance(piece, Reasoning):
                out.append(piece)
                quoted = self._quote(piece.text)
                if quoted:
                    out.append(Text(text=quoted))
            elif isinstance(piece, Text) and self._quote_open:
                self._quote_open = False
                out.append(Text(text="\n" if self._line_start else "\n\n"))
                self._line_start = True
                out.append(piece)
            else:
                out.append(piece)
        return out

    def _quote(self, text: str) -> str:
        """Markdown quote, ``> `` at the start of every line, across deltas."""
        buf: list[str] = []
        if not self._quote_open:
            self._quote_open = True
            self._line_start = True
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if i:
                if self._line_start:
                    buf.append(">")  # an empty line inside the quote
                buf.append("\n")
                self._line_start = True
            if line:
                if self._line_start:
                    buf.append("> ")
                    self._line_start = False
                buf.append(line)
        return "".join(buf)


def translate_all(data: bytes, *, inline_reasoning: bool = False) -> tuple[str, str, str | None]:
    """Translate a whole capture: ``(text, reasoning, finish_reason)``; the finish
    reason is ``None`` when the stream failed or is pending."""
    t = Translation(inline_reasoning=inline_reasoning)
    pieces = t.feed(data) + t.finish()
    text = "".join(p.text for p in pieces if isinstance(p, Text))
    reasoning = "".join(p.text for p in pieces if isinstance(p, Reasoning))
    reason = next((p.reason for p in pieces if isinstance(p, Finish)), None)
    if any(isinstance(p, (Failure, Pending)) for p in pieces):
        reason = None
    return text, reasoning, reason
