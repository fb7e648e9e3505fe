"""Backend events to what the client sees: answer text, reasoning, images, the end.

:class:`AnswerExtractor` reads the live message documents reported by
:class:`translator.backend.BackendDecoder` and emits :data:`Piece` values,
incrementally: for every message it remembers how much it already turned into
pieces, so each event costs O(new text), not O(whole text).

What is shown (``docs/backend-protocol.md#what-is-shown``,
``docs/backend-2026.md#reasoning-and-visible-text``):

* ``Text``: assistant ``text``/``multimodal_text`` addressed to all (``recipient``
  ``all``), on channel ``final`` or ``null``, not hidden, not a thinking preamble,
  weight not 0. We stream a ``null``-channel message before its ``end_turn``
  arrives, as the web page does; the end of the turn is still decided by
  ``end_turn``. Code sent to a tool (``content_type: code``) and its
  ``execution_output`` become fenced blocks in the text, as the original did
  (docs/original-behaviour.md#streams), except the internals of the image tool and of search or
  memory tools. Private-use markers ``\\ue200 kind \\ue202 payload \\ue201`` are
  replaced by the readable text or link their ``content_references`` give (an
  entity falls back to its name); stray markers are dropped.
* ``Reasoning``: ``thoughts`` items (summary as a bold header, then the content),
  ``reasoning_recap`` labels, thinking preambles and commentary, the old
  ``a8km123`` tool messages, and search/browse steps.
* Never shown: system, user, developer, ``*_editable_context`` messages, messages
  with ``is_visually_hidden_from_conversation``, and tool prompts.

The turn ends on ``[DONE]``: :class:`Finish` when a visible answer finished
(``end_turn``, or a finished ``final``-channel message), :class:`Pending` when
the backend continues asynchronously (image generation, stream handoff), and
:class:`Failure` otherwise. A finished ``thoughts`` or recap message never ends
the turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from errors import Chat2ApiError, RateLimited, UpstreamError
from translator.backend import (
    AsyncStatus,
    BackendEvent,
    ConversationId,
    Done,
    Handoff,
    Malformed,
    MessageChanged,
    Moderation,
    StreamError,
    Title,
)

__all__ = [
    "AnswerExtractor",
    "Failure",
    "Finish",
    "Image",
    "Meta",
    "Pending",
    "Piece",
    "Progress",
    "Reasoning",
    "SandboxLink",
    "Text",
]


# ---------------------------------------------------------------- pieces


@dataclass(frozen=True, kw_only=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Reasoning:
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Image:
    """An image the I/O layer resolves (``file-service://`` or ``sediment://``)."""

    pointer: str
    message_id: str | None
    conversation_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class SandboxLink:
    """The target of a ``(sandbox:/path)`` link in the answer text, in place: the
    text before it ends with ``(`` and the text after it starts with ``)``."""

    path: str
    message_id: str | None
    conversation_id: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    """Status text that is not the answer (for example "Processing image")."""

    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Meta:
    conversation_id: str | None
    message_id: str | None
    title: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    reason: str  # "stop" | "length" | "content_filter"


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    error: Chat2ApiError


@dataclass(frozen=True, kw_only=True, slots=True)
class Pending:
    """The stream ended but the answer continues elsewhere: ``kind`` is
    ``"async"`` (poll the conversation, e.g. image generation) or ``"handoff"``
    (follow ``/f/conversation/resume`` or the WebSocket topic)."""

    kind: str
    conversation_id: str | None
    message_id: str | None = None
    detail: Any = None


Piece: TypeAlias = (
    Text | Reasoning | Image | SandboxLink | Progress | Meta | Finish | Failure | Pending
)

# One Text or Reasoning per answer delta: the hot spots make them with the slot's
# setter instead of the generated keyword __init__, at about half the cost (a
# frozen dataclass's own __init__ sets its fields the same way, past __setattr__).
_new = object.__new__
_set_text: Callable[[Text, str], None] = Text.__dict__["text"].__set__
_set_reasoning: Callable[[Reasoning, str], None] = Reasoning.__dict__["text"].__set__


# ---------------------------------------------------------------- message kinds

_HIDDEN = 0
_ANSWER = 1
_REASONING = 2  # text-like reasoning: preambles, commentary, a8km123
_THOUGHTS = 3
_RECAP = 4
_CODE = 5  # fenced in the answer
_OUTPUT = 6  # execution_output, fenced in the answer
_IMAGES = 7  # tool multimodal_text (image results)
_PROGRESS = 8  # tool ui_card ("Processing image")
_BROWSE = 9  # tether_quote / tether_browsing_display
_TOOL_REASONING = 10  # calls to search/memory tools
_IMAGE_CALL = 11  # calls to the image tool

_IMAGE_TOOLS = ("dalle", "t2uay3k", "image_gen", "text2im")
_QUIET_TOOLS = ("web", "browser", "bio", "file_search", "myfiles_browser", "search", "memory")
_HIDDEN_CONTENT = (
    "user_editable_context",
    "model_editable_context",
    "system_error",
    "developer_content",
)

# Private-use characters the backend puts in text (entity/citation spans).
_PUA_TABLE = {c: None for c in range(0xE200, 0xE20A)}
_SPECIAL = re.compile("[\ue200-\ue209\u3010]|\\(sandbox:")
# _SPECIAL for text without "(": a bare character class, which re scans faster.
_MARKER = re.compile("[\ue200-\ue209\u3010]")
_SANDBOX = "(sandbox:"
_MAX_SPAN = 4096
_MAX_BRACKET = 120
_CITATION_SYNTAX = re.compile(r"【(\d+)(?::\d+)?(?:†[^】]{0,60})?】")


def _s(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else None


def _has_special(s: str) -> bool:
    """``_SPECIAL.search(s) is not None``, with the cheap tests first: on a
    word-sized delta the alternation regex costs more than everything else."""
    if "(" in s:
        return _SPECIAL.search(s) is not None
    return not s.isascii() and _MARKER.search(s) is not None


def _tool_matches(recipient: str, names: tuple[str, ...]) -> bool:
    r = recipient.lower()
    return any(r == n or r.startswith(n + ".") or r.startswith(n) for n in names)


def _classify(msg: dict[str, Any]) -> int:
    author = msg.get("author")
    role = _s(author, "role")
    content = msg.get("content")
    ct = _s(content, "content_type")
    md = msg.get("metadata")
    if not isinstance(md, dict):
        md = {}
    if md.get("is_visually_hidden_from_conversation") is True or ct in _HIDDEN_CONTENT:
        return _HIDDEN
    recipient = msg.get("recipient")
    if not isinstance(recipient, str) or not recipient:
        recipient = "all"
    if role == "assistant":
        if ct == "thoughts":
            return _THOUGHTS
        if ct == "reasoning_recap":
            return _RECAP
        if recipient != "all":
            if ct not in ("code", "text"):
                return _HIDDEN
            if _tool_matches(recipient, _IMAGE_TOOLS):
                return _IMAGE_CALL
            if _tool_matches(recipient, _QUIET_TOOLS):
                return _TOOL_REASONING
            return _CODE
        if ct == "code":
            return _CODE
        if ct not in ("text", "multimodal_text"):
            return _HIDDEN
        channel = msg.get("channel")
        if md.get("is_thinking_preamble_message") is True or (
            channel is not None and channel != "final"
        ):
            return _REASONING
        weight = msg.get("weight")
        if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight == 0:
            return _HIDDEN
        return _ANSWER
    if role == "tool":
        name = _s(author, "name")
        if ct == "execution_output":
            return _OUTPUT
        if ct == "multimodal_text":
            return _IMAGES
        if ct in ("tether_quote", "tether_browsing_display"):
            return _BROWSE if md.get("command") != "spinner" else _HIDDEN
        if ct == "text":
            if name == "a8km123" or "initial_text" in md:
                return _REASONING
            if md.get("ui_card") is True:
                return _PROGRESS
        return _HIDDEN
    return _HIDDEN  # system, user, developer, critic, ...


def _finished(msg: dict[str, Any]) -> bool:
    status = msg.get("status")
    return isinstance(status, str) and status.startswith("finished")


def _md_link(title: str, url: str) -> str:
    title = title.replace("[", "(").replace("]", ")").replace("\n", " ").strip() or url
    url = url.replace(" ", "%20").replace(")", "%29").replace("(", "%28")
    return f"[{title}]({url})"


def _ref_text(ref: dict[str, Any]) -> str | None:
    """Readable text for one content reference, or None if it gives none."""
    alt = ref.get("alt")
    if isinstance(alt, str) and alt.strip():
        return alt
    items = ref.get("items")
    links: list[str] = []
    if isinstance(items, list):
        for item in items[:5]:
            url, title = _s(item, "url"), _s(item, "title")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                links.append(_md_link(title if isinstance(title, str) else "", url))
    if links:
        return " (" + ", ".join(links) + ")"
    name = ref.get("name")
    if ref.get("type") == "entity" and isinstance(name, str):
        return name
    return None


class _Cleaner:
    """Turns raw answer text into client text, holding back a marker span (or a
    ``(sandbox:`` link) until it is complete. ``feed`` returns strings and
    :class:`_Sandbox` placeholders."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = ""

    def feed(self, raw: str, md: dict[str, Any]) -> list[str | _Sandbox]:
        s = self.pending + raw if self.pending else raw
        self.pending = ""
        if not _has_special(s):
            cut = _partial_sandbox(s)
            if cut < len(s):
                self.pending = s[cut:]
                s = s[:cut]
            return [s] if s else []
        out: list[str | _Sandbox] = []
        buf: list[str] = []
        i = 0
        n = len(s)
        while i < n:
            m = _SPECIAL.search(s, i)
            if m is None:
                cut = _partial_sandbox(s, i)
                buf.append(s[i:cut])
                self.pending = s[cut:]
                break
            buf.append(s[i : m.start()])
            tok = m.group()
            start = m.start()
            if tok == "\ue200":
                j = s.find("\ue201", m.end())
                if j < 0:
                    if n - start > _MAX_SPAN:
                        i = m.end()  # never closed: drop the marker, keep the text
                        continue
                    self.pending = s[start:]
                    break
                buf.append(_render_span(s[start : j + 1], md))
                i = j + 1
            elif tok == "\u3010":
                j = s.find("\u3011", m.end(), start + _MAX_BRACKET)
                if j < 0:
                    if n - start > _MAX_BRACKET:
                        buf.append(tok)
                        i = m.end()
                        continue
                    self.pending = s[start:]
                    break
                buf.append(_render_bracket(s[start : j + 1], md))
                i = j + 1
            elif tok == _SANDBOX:
                j = s.find(")", m.end(), m.end() + 1024)
                if j < 0:
                    if n - start > 1024 + len(_SANDBOX):
                        buf.append(tok)
                        i = m.end()
                        continue
                    self.pending = s[start:]
                    break
                buf.append("(")
                out.append("".join(buf))
                buf = [")"]
                out.append(_Sandbox(s[m.end() : j]))
                i = j + 1
            else:
                i = m.end()  # a stray marker (\ue201-\ue209)
        text = "".join(buf)
        if text:
            out.append(text)
        return [x for x in out if not isinstance(x, str) or x]

    def flush(self) -> str:
        """The message ended: release what was held back."""
        s, self.pending = self.pending, ""
        if s.startswith("\ue200"):
            return ""  # an unterminated entity/citation span is machine syntax
        return s.translate(_PUA_TABLE)


@dataclass(frozen=True, slots=True)
class _Sandbox:
    path: str


def _partial_sandbox(s: str, lo: int = 0) -> int:
    """Where a possible unfinished ``(sandbox:`` starts at the end of ``s``."""
    k = s.rfind("(", max(lo, len(s) - len(_SANDBOX) + 1))
    if k >= 0 and _SANDBOX.startswith(s[k:]):
        return k
    return len(s)


def _refs(md: dict[str, Any]) -> list[dict[str, Any]]:
    refs = md.get("content_references")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


def _render_span(span: str, md: dict[str, Any]) -> str:
    for ref in _refs(md):
        if ref.get("matched_text") == span:
            text = _ref_text(ref)
            if text is not None:
                return text.translate(_PUA_TABLE)
            break
    kind, _, payload = span[1:-1].partition("\ue202")
    if kind == "entity":
        try:
            data = json.loads(payload.split("\ue202")[0])
        except (ValueError, RecursionError):
            return ""
        if isinstance(data, list) and len(data) >= 2 and isinstance(data[1], str):
            return data[1].translate(_PUA_TABLE)
    return ""


def _render_bracket(span: str, md: dict[str, Any]) -> str:
    """Old browsing citations like 【11†source】: a link when metadata names the
    source, nothing when it does not (the syntax means nothing to a reader),
    and anything else in such brackets is ordinary text."""
    for ref in _refs(md):
        if ref.get("matched_text") == span:
            text = _ref_text(ref)
            return text if text is not None else ""
    m = _CITATION_SYNTAX.fullmatch(span)
    if m is None:
        return span
    idx = int(m.group(1))
    cites = md.get("citations")
    if isinstance(cites, list):
        for c in cites:
            meta = _s(c, "metadata")
            if _s(_s(meta, "extra"), "cited_message_idx") != idx:
                continue
            url, title = _s(meta, "url"), _s(meta, "title")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return " (" + _md_link(title if isinstance(title, str) else "", url) + ")"
    return ""


class _Msg:
    __slots__ = (
        "id",
        "kind",
        "offs",
        "text_off",
        "items",
        "cleaners",
        "fence",
        "done",
        "images",
        "shown",
        "progress",
        "finished_text",
        "msg",
    )

    def __init__(self, mid: str) -> None:
        self.id = mid
        self.kind = -1
        self.offs: list[int] = []  # per part (answer) or [content text offset]
        self.text_off = 0
        self.items: list[list[int]] = []  # thoughts: [header_done, content_offset]
        self.cleaners: list[_Cleaner] = []
        self.fence = False
        self.done = False
        self.images: set[str] = set()
        self.shown = False
        self.progress = False
        self.finished_text = False
        self.msg: dict[str, Any] | None = None


_MAX_CONSECUTIVE_MALFORMED = 200


class AnswerExtractor:
    """``feed(backend_event) -> list[Piece]``; see the module docstring.

    ``quiet_tools``: code the model sends to ChatGPT's own tools, and their output, become
    reasoning instead of fenced blocks in the answer. Used while a client's tools are
    emulated (docs/tool-emulation.md): that traffic is the web model working in ChatGPT's
    sandbox, not an answer, and must not be read as one.
    """

    def __init__(self, *, quiet_tools: bool = False) -> None:
        self.quiet_tools = quiet_tools
        self.conversation_id: str | None = None
        self.message_id: str | None = None
        self.title: str | None = None
        #: The model the assistant's messages say answered (``resolved_model_slug``,
        #: else ``model_slug``), and the backend's reasons for a switch
        #: (``model_adjustments``): docs/model-names.md, "Which model answered".
        self.model_slug: str | None = None
        self.model_adjustments: tuple[str, ...] = ()
        self.text_emitted = False
        self.finished = False  # a terminal piece (Finish/Failure/Pending) was emitted
        self._msgs: dict[str, _Msg] = {}
        self._answer: dict[str, Any] | None = None  # the finished answer message
        self._text_owner: object = None
        self._text_tail = ""
        self._reason_owner: object = None
        self._reason_tail = ""
        self._fence_owner: _Msg | None = None
        self._blocked = False
        self._async: Any = None
        #: The backend's ``stream_handoff`` (the turn goes on elsewhere), until followed.
        self.handoff: Handoff | None = None
        #: The stream ended in a handoff: a Pending piece of kind "handoff" was emitted.
        self.handed_off = False
        # After a followed handoff a message may come again from its start: text
        # that shrinks (or a document added anew over it) is then that repeat, not
        # an edit, and nothing is given twice (docs/stream-handoff.md).
        self._replaying = False
        self._malformed = 0

    # ---------------------------------------------------------------- entry

    def feed(self, ev: BackendEvent) -> list[Piece]:
        if self.finished:
            return []
        out: list[Piece] = []
        if isinstance(ev, MessageChanged):
            self._malformed = 0
            self._message(ev, out)
        elif isinstance(ev, Malformed):
            self._malformed += 1
            if ev.fatal or self._malformed > _MAX_CONSECUTIVE_MALFORMED:
                self._fail(UpstreamError(f"the backend stream is malformed: {ev.reason}"), out)
        elif isinstance(ev, Done):
            self._done(out)
        else:
            self._malformed = 0
            if isinstance(ev, ConversationId):
                if ev.conversation_id != self.conversation_id:
                    self.conversation_id = ev.conversation_id
                    out.append(self._meta())
            elif isinstance(ev, Title):
                self.title = ev.title
                out.append(self._meta())
            elif isinstance(ev, StreamError):
                self._fail(_stream_error(ev), out)
            elif isinstance(ev, Moderation):
                if ev.blocked:
                    self._blocked = True
            elif isinstance(ev, AsyncStatus):
                self._async = ev.status
            elif isinstance(ev, Handoff):
                self.handoff = ev
        return out

    def follow_handoff(self) -> None:
        """The caller reads the rest of a handed-off turn: go on as if the stream went
        on. Messages keep what they already gave, so a stream that repeats them from
        the start of the turn adds only what is new (docs/stream-handoff.md)."""
        self.handoff = None
        self.handed_off = self.finished = False
        self._replaying = True

    def end_of_stream(self, *, saw_done: bool) -> list[Piece]:
        """The upstream connection ended; returns the terminal piece if not yet given."""
        if self.finished:
            return []
        out: list[Piece] = []
        if saw_done:
            self._done(out)
            return out
        self._close_all(out)
        if self._answer is not None and not self._blocked:
            self._finish(out)
        else:
            self._fail(
                UpstreamError("the backend stream ended early, before the answer was complete"),
                out,
            )
        return out

    # ---------------------------------------------------------------- helpers

    def _note_model(self, msg: dict[str, Any]) -> None:
        author = msg.get("author")
        md = msg.get("metadata")
        if not isinstance(author, dict) or author.get("role") != "assistant":
            return
        if not isinstance(md, dict):
            return
        slug = md.get("resolved_model_slug") or md.get("model_slug")
        if self.model_slug is None and isinstance(slug, str) and slug:
            self.model_slug = slug
        adjustments = md.get("model_adjustments")
        if isinstance(adjustments, list) and adjustments and not self.model_adjustments:
            self.model_adjustments = tuple(a for a in adjustments if isinstance(a, str))

    def _meta(self) -> Meta:
        return Meta(
            conversation_id=self.conversation_id, message_id=self.message_id, title=self.title
        )

    def _fail(self, err: Chat2ApiError, out: list[Piece]) -> None:
        self._close_fence(out)
        out.append(Failure(error=err))
        self.finished = True

    def _emit_text(self, owner: object, text: str, out: list[Piece]) -> None:
        if not text:
            return
        if owner != self._text_owner:
            fo = self._fence_owner
            if fo is not None and fo is not owner:
                self._close_fence(out)
            if self._text_tail:
                tail = self._text_tail
                sep = "" if tail.endswith("\n\n") else ("\n" if tail.endswith("\n") else "\n\n")
                if sep:
                    out.append(Text(text=sep))
            self._text_owner = owner
        piece = _new(Text)
        _set_text(piece, text)
        out.append(piece)
        self._text_tail = text[-2:] if len(text) > 1 else (self._text_tail + text)[-2:]
        self.text_emitted = True

    def _emit_reasoning(self, owner: object, text: str, out: list[Piece]) -> None:
        if not text:
            return
        if owner != self._reason_owner:
            tail = self._reason_tail
            if tail:
                sep = "" if tail.endswith("\n\n") else ("\n" if tail.endswith("\n") else "\n\n")
                if sep:
                    out.append(Reasoning(text=sep))
            self._reason_owner = owner
        piece = _new(Reasoning)
        _set_reasoning(piece, text)
        out.append(piece)
        self._reason_tail = text[-2:] if len(text) > 1 else (self._reason_tail + text)[-2:]

    def _close_fence(self, out: list[Piece]) -> None:
        fo = self._fence_owner
        if fo is None:
            return
        self._fence_owner = None
        fo.fence = False
        close = "```" if self._text_tail.endswith("\n") else "\n```"
        out.append(Text(text=close))
        self._text_tail = (self._text_tail + close)[-2:]

    def _close_all(self, out: list[Piece]) -> None:
        for st in self._msgs.values():
            for i, cl in enumerate(st.cleaners):
                rest = cl.flush()
                if rest:
                    self._emit_text((st, i), rest, out)
        self._close_fence(out)

    # ---------------------------------------------------------------- messages

    def _message(self, ev: MessageChanged, out: list[Piece]) -> None:
        msg = ev.message
        mid = msg.get("id")
        key = mid if isinstance(mid, str) else f"#slot{ev.slot}"
        st = self._msgs.get(key)
        if st is None:
            if len(self._msgs) >= 4096:
                return
            st = self._msgs[key] = _Msg(key)
        if ev.text_only and st.kind >= 0 and st.msg is msg:
            kind = st.kind  # only text grew: the classification still holds
            if kind == _ANSWER and st.shown:
                self._answer_text(st, msg, out)
                return
        else:
            kind = st.kind = _classify(msg)
            st.msg = msg
            if self.model_slug is None or not self.model_adjustments:
                self._note_model(msg)
        if kind == _HIDDEN:
            return
        content = msg.get("content")
        if not isinstance(content, dict):
            return
        if ev.cuts and not self._replaying:
            self._apply_cuts(st, ev.cuts)
        if kind == _ANSWER:
            self._answer_parts(st, msg, content, out)
            if _finished(msg) and (msg.get("end_turn") is True or msg.get("channel") == "final"):
                self._answer = msg
        elif kind == _THOUGHTS:
            self._thoughts(st, msg, content, out)
        elif kind == _RECAP:
            text = content.get("content")
            if isinstance(text, str) and text and _finished(msg) and not st.done:
                st.done = True
                self._emit_reasoning(st, text.translate(_PUA_TABLE), out)
        elif kind == _REASONING:
            self._reasoning_parts(st, msg, content, out)
        elif kind in (_CODE, _OUTPUT):
            self._code(st, msg, content, kind, out)
        elif kind == _TOOL_REASONING:
            self._tool_reasoning(st, msg, content, out)
        elif kind == _IMAGES:
            self._images(st, msg, content, out)
        elif kind == _IMAGE_CALL:
            if not st.progress:
                st.progress = True
                out.append(Progress(text="Generating an image"))
        elif kind == _PROGRESS:
            self._progress(st, msg, content, out)
        elif kind == _BROWSE:
            self._browse(st, content, out)

    def _apply_cuts(self, st: _Msg, cuts: tuple[tuple[str, int], ...]) -> None:
        for path, keep in cuts:
            if not path.startswith("/message/content/"):
                continue
            segs = path.split("/")[3:]
            if len(segs) == 2 and segs[0] == "parts" and segs[1].isdigit():
                i = int(segs[1])
                if i < len(st.offs) and keep < st.offs[i]:
                    cl = st.cleaners[i] if i < len(st.cleaners) else None
                    if cl is not None and cl.pending:
                        start = st.offs[i] - len(cl.pending)
                        cl.pending = cl.pending[: max(0, keep - start)]
                    st.offs[i] = keep
            elif segs == ["parts"]:
                del st.offs[keep:]
            elif len(segs) == 1 and segs[0] in ("text", "content"):
                st.text_off = min(st.text_off, keep)
            elif len(segs) == 3 and segs[0] == "thoughts" and segs[2] == "content":
                if segs[1].isdigit() and int(segs[1]) < len(st.items):
                    rec = st.items[int(segs[1])]
                    rec[1] = min(rec[1], keep)
            elif segs == ["thoughts"]:
                del st.items[keep:]

    def _answer_parts(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        parts = content.get("parts")
        if not isinstance(parts, list):
            return
        md = msg.get("metadata")
        if not isinstance(md, dict):
            md = {}
        offs = st.offs
        finished = _finished(msg)
        for i, part in enumerate(parts):
            if i >= len(offs):
                offs.append(0)
                st.cleaners.append(_Cleaner())
            if isinstance(part, str):
                off = offs[i]
                n = len(part)
                if n > off:
                    if not st.shown:
                        st.shown = True
                        self.message_id = st.id
                        out.append(self._meta())
                    offs[i] = n
                    for item in st.cleaners[i].feed(part[off:], md):
                        if isinstance(item, str):
                            self._emit_text((st, i), item, out)
                        else:
                            self._sandbox(st, item, out)
                elif n < off and not self._replaying:
                    offs[i] = n  # shrunk (legacy full state): continue from here
                    st.cleaners[i].pending = ""
            elif isinstance(part, dict):
                self._image_part(st, part, finished, out)
        if finished and not st.done:
            st.done = True
            for i, cl in enumerate(st.cleaners):
                rest = cl.flush()
                if rest:
                    self._emit_text((st, i), rest, out)

    def _answer_text(self, st: _Msg, msg: dict[str, Any], out: list[Piece]) -> None:
        """Fast path: only the text of a known answer message grew."""
        parts = msg["content"]["parts"]
        offs = st.offs
        for i, part in enumerate(parts):
            if i < len(offs) and type(part) is str and len(part) > offs[i]:
                new = part[offs[i] :]
                offs[i] = len(part)
                cleaner = st.cleaners[i]
                # The cleaner has work on markers, or a "(" that may start
                # "(sandbox:" (_has_special, inlined: this runs per delta).
                if "(" in new:
                    plain = "(" not in new[-9:] and _SPECIAL.search(new) is None
                else:
                    plain = new.isascii() or _MARKER.search(new) is None
                if cleaner.pending or not plain:
                    md = msg.get("metadata")
                    for item in cleaner.feed(new, md if isinstance(md, dict) else {}):
                        if isinstance(item, str):
                            self._emit_text((st, i), item, out)
                        else:
                            self._sandbox(st, item, out)
                else:
                    self._emit_text((st, i), new, out)
            elif i >= len(offs):
                self._answer_parts(st, msg, msg["content"], out)  # a new part
                return

    def _sandbox(self, st: _Msg, item: _Sandbox, out: list[Piece]) -> None:
        self._close_fence(out)
        out.append(
            SandboxLink(path=item.path, message_id=st.id, conversation_id=self.conversation_id)
        )

    def _image_part(self, st: _Msg, part: dict[str, Any], finished: bool, out: list[Piece]) -> None:
        if part.get("content_type") != "image_asset_pointer":
            return
        pointer = part.get("asset_pointer")
        if not isinstance(pointer, str) or not pointer or pointer in st.images:
            return
        if not finished:
            if not st.progress:
                st.progress = True
                out.append(Progress(text="Generating an image"))
            return
        st.images.add(pointer)
        self._close_fence(out)
        out.append(Image(pointer=pointer, message_id=st.id, conversation_id=self.conversation_id))

    def _images(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        parts = content.get("parts")
        if not isinstance(parts, list):
            return
        finished = _finished(msg)
        for part in parts:
            if isinstance(part, dict):
                self._image_part(st, part, finished, out)

    def _thoughts(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        thoughts = content.get("thoughts")
        if not isinstance(thoughts, list):
            return
        items = st.items
        last = len(thoughts) - 1
        finished = _finished(msg)
        for i, item in enumerate(thoughts):
            if i >= len(items):
                items.append([0, 0])
            if not isinstance(item, dict):
                continue
            rec = items[i]
            body = item.get("content")
            if not isinstance(body, str):
                body = ""
            if not rec[0]:
                # The summary may still be streaming: wait until the body starts,
                # the item is finished, or a later item exists.
                if not (body or item.get("finished") is True or i < last or finished):
                    continue
                rec[0] = 1
                summary = item.get("summary")
                if isinstance(summary, str) and summary.strip():
                    header = "**" + summary.strip().translate(_PUA_TABLE) + "**"
                    self._emit_reasoning((st, i), header + ("\n\n" if body else ""), out)
            n = len(body)
            if n > rec[1]:
                self._emit_reasoning((st, i), body[rec[1] :].translate(_PUA_TABLE), out)
                rec[1] = n
            elif n < rec[1] and not self._replaying:
                rec[1] = n

    def _reasoning_parts(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        parts = content.get("parts")
        if isinstance(parts, list):
            offs = st.offs
            for i, part in enumerate(parts):
                if i >= len(offs):
                    offs.append(0)
                if isinstance(part, str):
                    n = len(part)
                    if n > offs[i]:
                        self._emit_reasoning(st, part[offs[i] :].translate(_PUA_TABLE), out)
                    offs[i] = n
        md = msg.get("metadata")
        if _finished(msg) and isinstance(md, dict) and not st.finished_text:
            ft = md.get("finished_text")
            if isinstance(ft, str) and ft.strip():
                st.finished_text = True
                self._emit_reasoning(("label", st), ft.strip().translate(_PUA_TABLE), out)

    def _code(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], kind: int, out: list[Piece]
    ) -> None:
        text = content.get("text")
        if not isinstance(text, str):
            return
        if self.quiet_tools:
            if len(text) > st.text_off:
                self._emit_reasoning(st, text[st.text_off :].translate(_PUA_TABLE), out)
            st.text_off = len(text)
            return
        n = len(text)
        if n > st.text_off:
            new = text[st.text_off :].translate(_PUA_TABLE)
            st.text_off = n
            if not st.fence and not st.done:
                if kind == _CODE:
                    lang = content.get("language")
                    if not isinstance(lang, str) or lang in ("", "unknown"):
                        lang = msg.get("recipient")
                    lang = lang if isinstance(lang, str) and lang != "all" else ""
                else:
                    lang = "Output"  # the original's label for execution output
                self._emit_text(st, "```" + "".join(lang.split()) + "\n", out)
                st.fence = True
                self._fence_owner = st
            if st.fence:
                self._emit_text(st, new, out)
        elif n < st.text_off and not self._replaying:
            st.text_off = n
        if _finished(msg) and not st.done:
            st.done = True
            if st.fence:
                self._close_fence(out)

    def _tool_reasoning(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        text = content.get("text")
        if not isinstance(text, str):
            parts = content.get("parts")
            text = parts[0] if isinstance(parts, list) and parts else None
        if isinstance(text, str) and len(text) > st.text_off:
            self._emit_reasoning(st, text[st.text_off :].translate(_PUA_TABLE), out)
            st.text_off = len(text)

    def _progress(
        self, st: _Msg, msg: dict[str, Any], content: dict[str, Any], out: list[Piece]
    ) -> None:
        parts = content.get("parts")
        if st.progress or not isinstance(parts, list):
            return
        text = "".join(p for p in parts if isinstance(p, str)).strip()
        if text:
            st.progress = True
            out.append(Progress(text=text.translate(_PUA_TABLE)))

    def _browse(self, st: _Msg, content: dict[str, Any], out: list[Piece]) -> None:
        if st.done:
            return
        url = content.get("url")
        title = content.get("title")
        summary = content.get("summary")
        domain = content.get("domain")
        line = ""
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            label = title if isinstance(title, str) and title else url
            line = "Read " + _md_link(label, url)
        elif isinstance(summary, str) and summary.strip():
            line = summary.strip()
        elif isinstance(title, str) and title:
            line = "Read " + title
        elif isinstance(domain, str) and domain:
            line = "Read " + domain
        if line:
            st.done = True
            self._emit_reasoning(st, line.translate(_PUA_TABLE), out)

    # ---------------------------------------------------------------- the end

    def _finish(self, out: list[Piece]) -> None:
        reason = "stop"
        if self._blocked:
            reason = "content_filter"
        elif self._answer is not None:
            fd = _s(self._answer.get("metadata"), "finish_details")
            ftype = _s(fd, "type")
            if ftype == "max_tokens":
                reason = "length"
            elif ftype == "interrupted":
                self._fail(UpstreamError("the backend interrupted the answer"), out)
                return
            elif ftype in ("content_filter", "moderation"):
                reason = "content_filter"
        out.append(Finish(reason=reason))
        self.finished = True

    def _done(self, out: list[Piece]) -> None:
        self._close_all(out)
        for st in self._msgs.values():
            # Images of messages that never reported "finished": the stream is over,
            # so what they hold is final.
            parts = _s(_s(st.msg, "content"), "parts")
            if st.kind in (_IMAGES, _ANSWER) and isinstance(parts, list):
                for part in parts:
                    if isinstance(part, dict):
                        self._image_part(st, part, True, out)
        if self._blocked or self._answer is not None:
            self._finish(out)
        elif self.handoff is not None:
            out.append(
                Pending(
                    kind="handoff",
                    conversation_id=self.handoff.conversation_id or self.conversation_id,
                    message_id=self.message_id,
                    detail=self.handoff,
                )
            )
            self.finished = self.handed_off = True
        elif self._async is not None and not self.text_emitted:
            out.append(
                Pending(
                    kind="async",
                    conversation_id=self.conversation_id,
                    message_id=self.message_id,
                    detail=self._async,
                )
            )
            self.finished = True
        elif self.text_emitted:
            self._fail(
                UpstreamError("the backend ended the stream before the answer finished"), out
            )
        else:
            self._fail(UpstreamError("the backend ended the stream without an answer"), out)


def _stream_error(ev: StreamError) -> Chat2ApiError:
    low = (ev.message + " " + (ev.code or "")).lower()
    if "rate limit" in low or "rate_limit" in low or "too many requests" in low:
        return RateLimited(ev.message, code=ev.code)
    return UpstreamError(ev.message, code=ev.code)
