"""Server-sent events of the ChatGPT backend to typed backend events.

:class:`BackendDecoder` keeps the message documents of one answer stream up to
date and reports what happened, in both formats of ``docs/backend-protocol.md#answer-stream``:

* legacy full state: every event carries a whole message, parts cumulative;
* delta encoding v1 (``docs/backend-2026.md#reasoning-and-visible-text`` for its 2026 details):
  ``event:
  delta_encoding`` / ``data: "v1"``, then frames ``{p, o, v, c}``. A frame that
  lacks ``c``, ``p`` or ``o`` reuses the previous frame's value (``v`` is never
  carried); a bare ``{"v": [...]}`` after a ``patch`` therefore continues it.
  Ops: ``add``, ``replace``, ``append`` (string concat, list extend/push, object
  shallow merge), ``remove``, ``truncate`` and ``patch``, on RFC 6901 pointers.

Typed plain-data events (``title_generation``, ``resume_conversation_token``,
moderation, ...), ``[DONE]`` and in-stream errors become their own events. A
malformed event never raises: it becomes :class:`Malformed` and decoding goes
on. Documents are kept in place and reported live (no copy per event), so the
next layer must read, not keep, what it is given.
"""

from __future__ import annotations

import json
import json.decoder
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from translator.sse import ServerSentEvent

__all__ = [
    "AsyncStatus",
    "BackendDecoder",
    "BackendEvent",
    "ConversationId",
    "Done",
    "EncodingAnnounced",
    "Handoff",
    "Info",
    "Malformed",
    "MessageChanged",
    "MessageMarker",
    "Moderation",
    "ResumeToken",
    "StreamComplete",
    "StreamError",
    "Title",
]

# Limits on what one stream may build (fuzzed and hostile input must stay bounded).
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_SLOTS = 1024
_POINTER_CACHE_SIZE = 512


# ---------------------------------------------------------------- events


_set = object.__setattr__


@dataclass(frozen=True, kw_only=True, slots=True, init=False)
class MessageChanged:
    """Message document ``slot`` changed; ``message`` is the live ``message`` object.

    ``cuts`` lists string (or list) locations that were shortened or rewritten by
    this event, as ``(pointer, kept_length)``, so that incremental readers can
    move their offsets back. ``text_only``: the event only appended to strings.
    """

    slot: int
    message: dict[str, Any]
    cuts: tuple[tuple[str, int], ...] = ()
    text_only: bool = False

    # A hand-written __init__ is about twice as fast as the generated frozen one
    # (the decoder itself uses the still cheaper _message_changed below).
    def __init__(
        self,
        *,
        slot: int,
        message: dict[str, Any],
        cuts: tuple[tuple[str, int], ...] = (),
        text_only: bool = False,
    ) -> None:
        _set(self, "slot", slot)
        _set(self, "message", message)
        _set(self, "cuts", cuts)
        _set(self, "text_only", text_only)


_new = object.__new__
_set_slot, _set_message, _set_cuts, _set_text_only = (
    MessageChanged.__dict__[name].__set__ for name in ("slot", "message", "cuts", "text_only")
)


def _message_changed(
    slot: int, message: dict[str, Any], cuts: tuple[tuple[str, int], ...], text_only: bool
) -> MessageChanged:
    """``MessageChanged(...)`` for the decoder, one per changing event: a call with
    keyword arguments costs about as much as everything this does, so none."""
    changed: MessageChanged = _new(MessageChanged)
    _set_slot(changed, slot)
    _set_message(changed, message)
    _set_cuts(changed, cuts)
    _set_text_only(changed, text_only)
    return changed


@dataclass(frozen=True, kw_only=True, slots=True)
class EncodingAnnounced:
    encoding: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeToken:
    token: str
    conversation_id: str | None
    kind: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationId:
    conversation_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Title:
    title: str
    conversation_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AsyncStatus:
    status: Any
    conversation_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Moderation:
    blocked: bool
    flagged: bool = False
    message_id: str | None = None
    is_completion: bool | None = None
    conversation_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamError:
    message: str
    code: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Handoff:
    conversation_id: str | None
    turn_exchange_id: str | None = None
    options: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageMarker:
    message_id: str | None
    marker: str | None
    event: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamComplete:
    conversation_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Info:
    """A typed event the translator has no use for (kept for logs and tests)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class Malformed:
    """An event that could not be used. ``fatal`` when the stream cannot go on
    (a document over the size or depth limit)."""

    reason: str
    fatal: bool = False


BackendEvent: TypeAlias = (
    MessageChanged
    | EncodingAnnounced
    | ResumeToken
    | ConversationId
    | Title
    | AsyncStatus
    | Moderation
    | StreamError
    | Handoff
    | MessageMarker
    | StreamComplete
    | Info
    | Done
    | Malformed
)


class _OpError(Exception):
    """An op that cannot apply (internal; becomes :class:`Malformed`)."""


_MISSING: Any = object()
_SCALARS = (str, int, float, bool, type(None))

# json.loads without its Python wrappers (about a third of its cost on small
# events): the scanner of a default decoder and json's own string decoder, so
# the same strictness and errors (both are in C; typeshed does not list them).
_scan_json: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]
_scanstring: Callable[[str, int], tuple[str, int]] = vars(json.decoder)["scanstring"]
# The one-key text frame, as the backend writes it: {"v": "..."}.
_TEXT_FRAME = '{"v": "'


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative, early exit)."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, d = stack.pop()
        if d > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, d + 1))
    return False


def _index(seg: str, size: int, *, allow_end: bool) -> int:
    if seg == "-":
        if allow_end:
            return size
        raise _OpError("'-' does not name an element")
    if not seg.isdigit() or not seg.isascii() or (len(seg) > 1 and seg[0] == "0"):
        raise _OpError(f"bad list index {seg[:20]!r}")
    i = int(seg)
    if i > size or (i == size and not allow_end):
        raise _OpError("list index out of range")
    return i


class BackendDecoder:
    """``feed(event) -> list[BackendEvent]``; documents live in ``documents``."""

    def __init__(
        self, *, max_document_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH
    ) -> None:
        self.documents: dict[int, Any] = {}
        self.encoding: str | None = None
        self.events_consumed = 0
        self.done = False
        self.conversation_id: str | None = None
        self._max_bytes = max_document_bytes
        self._max_depth = max_depth
        self._sizes: dict[int, int] = {}
        self._c = 0
        self._p = ""
        self._o = "add"
        self._legacy_slots: dict[str, int] = {}
        self._pointers: dict[str, tuple[str, ...]] = {}
        self._cuts: list[tuple[str, int]] = []
        self._changed = False
        self._data = ""  # the current event's data, stripped
        self._brackets = -1  # its bracket count, once needed (-1: not yet counted)
        self._structural = False
        self._appended: tuple[Any, Any] | None = None
        # (container, key, slot, event) of the last plain string append: the
        # common {"v": "text"} frame goes straight there, and reports the same
        # (immutable) MessageChanged again.
        self._fast: tuple[Any, Any, int, MessageChanged] | None = None
        self._errors_seen: set[str] = set()

    def follow_handoff(self) -> None:
        """A handed-off turn goes on in another stream, counted from 0 and ended by its
        own ``[DONE]``; the documents stay, for ops on messages begun before."""
        self.events_consumed = 0
        self.done = False

    # ---------------------------------------------------------------- entry

    def feed(self, event: ServerSentEvent) -> list[BackendEvent]:
        return self.feed_raw(event.event, event.data)

    def feed_raw(self, name: str, data: str) -> list[BackendEvent]:
        """:meth:`feed` for an ``(event type, data)`` pair."""
        stripped = data.strip()
        if not stripped:
            # empty data lines occur (docs/backend-protocol.md#answer-stream) and are not counted
            return []
        if stripped == "[DONE]":
            self.done = True
            return [Done()]
        self.events_consumed += 1
        fast = self._fast
        if (
            fast is not None
            and stripped.startswith(_TEXT_FRAME)
            and stripped.endswith('"}')
            and name != "delta_encoding"
        ):
            # The text frame needs no dict: decode just its string. Anything
            # unusual (a bad escape, a second key) takes the general path.
            try:
                v, end = _scanstring(stripped, 7)
            except ValueError:
                end = 0
            if end == len(stripped) - 1:
                appended = self._append_text(fast, v)
                if appended is not None:
                    return appended
                self._data, self._brackets = stripped, -1
                return self._delta({"v": v}, len(stripped))
        self._data, self._brackets = stripped, -1
        # json.loads(stripped): the data has no surrounding whitespace, so a
        # value that does not end the text means extra data.
        try:
            obj, end = _scan_json(stripped, 0)
        except (StopIteration, ValueError, RecursionError):
            return [Malformed(reason="event data is not JSON")]
        if end != len(stripped):
            return [Malformed(reason="event data is not JSON")]
        try:
            return self._dispatch(name, obj, len(stripped))
        except RecursionError:
            return [Malformed(reason="event nests too deeply")]

    def _nesting(self) -> int:
        """An upper bound of the event's nesting depth, at C speed: a value cannot
        nest deeper than it has brackets, so most events skip the depth walk.
        Counted once per event, and only for events that need it."""
        if self._brackets < 0:
            self._brackets = self._data.count("{") + self._data.count("[")
        return self._brackets

    def _dispatch(self, name: str, obj: Any, size: int) -> list[BackendEvent]:
        if name == "delta" and type(obj) is dict:
            return self._delta(obj, size)
        if name == "delta_encoding" or (isinstance(obj, str) and obj == "v1"):
            if isinstance(obj, str):
                self.encoding = obj
                return [EncodingAnnounced(encoding=obj)]
            return [Malformed(reason="delta_encoding announcement is not a string")]
        if not isinstance(obj, dict):
            return [Malformed(reason="event data is not an object")]
        if name == "delta" or (
            "type" not in obj
            and "message" not in obj
            and ("v" in obj or "p" in obj or "o" in obj or "c" in obj)
        ):
            return self._delta(obj, size)
        kind = obj.get("type")
        if isinstance(kind, str):
            return self._typed(kind, obj)
        if "moderation_response" in obj:
            return [self._moderation(obj)]
        if "message" in obj:
            return self._legacy(obj, size)
        err = obj.get("error")
        if err:
            return [self._error(err, obj.get("error_code"))]
        return [Info(type="unknown", data=obj)]

    # ---------------------------------------------------------------- plain events

    def _conv(self, obj: dict[str, Any], out: list[BackendEvent]) -> str | None:
        cid = obj.get("conversation_id")
        if isinstance(cid, str) and cid and cid != self.conversation_id:
            self.conversation_id = cid
            out.append(ConversationId(conversation_id=cid))
        return cid if isinstance(cid, str) else None

    def _typed(self, kind: str, obj: dict[str, Any]) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        cid = self._conv(obj, out)
        if kind == "resume_conversation_token":
            token, k = obj.get("token"), obj.get("kind")
            if isinstance(token, str):
                out.append(
                    ResumeToken(
                        token=token, conversation_id=cid, kind=k if isinstance(k, str) else None
                    )
                )
            else:
                out.append(Malformed(reason="resume token without a token"))
        elif kind == "title_generation":
            title = obj.get("title")
            if isinstance(title, str):
                out.append(Title(title=title, conversation_id=cid))
        elif kind == "conversation_async_status":
            out.append(AsyncStatus(status=obj.get("async_status"), conversation_id=cid))
        elif kind == "moderation":
            out.append(self._moderation(obj))
        elif kind == "stream_handoff":
            opts = obj.get("options")
            tx = obj.get("turn_exchange_id")
            out.append(
                Handoff(
                    conversation_id=cid,
                    turn_exchange_id=tx if isinstance(tx, str) else None,
                    options=tuple(o for o in opts if isinstance(o, dict))
                    if isinstance(opts, list)
                    else (),
                )
            )
        elif kind == "message_marker":
            mid, marker, ev = obj.get("message_id"), obj.get("marker"), obj.get("event")
            out.append(
                MessageMarker(
                    message_id=mid if isinstance(mid, str) else None,
                    marker=marker if isinstance(marker, str) else None,
                    event=ev if isinstance(ev, str) else None,
                )
            )
        elif kind == "message_stream_complete":
            out.append(StreamComplete(conversation_id=cid))
        else:
            # input_message, server_ste_metadata, conversation_detail_metadata,
            # streaming_parent_patch, and whatever comes next.
            out.append(Info(type=kind, data=obj))
        return out

    def _moderation(self, obj: dict[str, Any]) -> Moderation:
        resp = obj.get("moderation_response")
        if not isinstance(resp, dict):
            resp = {}
        mid = obj.get("message_id")
        comp = obj.get("is_completion")
        cid = obj.get("conversation_id")
        return Moderation(
            blocked=resp.get("blocked") is True,
            flagged=resp.get("flagged") is True,
            message_id=mid if isinstance(mid, str) else None,
            is_completion=comp if isinstance(comp, bool) else None,
            conversation_id=cid if isinstance(cid, str) else None,
        )

    def _error(self, err: Any, code: Any) -> StreamError:
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or json.dumps(err)[:500]
            code = code or err.get("code")
        else:
            msg = err
        return StreamError(
            message=str(msg)[:2000] or "the backend reported an error",
            code=code if isinstance(code, str) else None,
        )

    # ---------------------------------------------------------------- legacy

    def _legacy(self, obj: dict[str, Any], size: int) -> list[BackendEvent]:
        self._fast = None
        out: list[BackendEvent] = []
        self._conv(obj, out)
        msg = obj.get("message")
        err = obj.get("error")
        if isinstance(msg, dict):
            if size > self._max_bytes or (
                self._nesting() > self._max_depth and _depth_over(obj, self._max_depth)
            ):
                return [Malformed(reason="message document over the size limit", fatal=True)]
            mid = msg.get("id")
            key = mid if isinstance(mid, str) else ""
            slot = self._legacy_slots.get(key)
            if slot is None:
                if len(self._legacy_slots) >= MAX_SLOTS:
                    return [Malformed(reason="too many messages", fatal=True)]
                slot = self._legacy_slots[key] = len(self._legacy_slots)
            self.documents[slot] = obj
            out.append(_message_changed(slot, msg, (), False))
        elif msg is not None:
            out.append(Malformed(reason="message is not an object"))
        if err:
            out.append(self._error(err, obj.get("error_code")))
        elif msg is None:
            out.append(Malformed(reason="event without a message"))
        return out

    # ---------------------------------------------------------------- delta v1

    def _pointer(self, p: str) -> tuple[str, ...]:
        segs = self._pointers.get(p)
        if segs is None:
            if p == "":
                segs = ()
            elif p[0] != "/":
                raise _OpError("pointer does not start with '/'")
            else:
                raw = p[1:].split("/")
                if len(raw) > self._max_depth:
                    raise _OpError("pointer too deep")
                segs = tuple(
                    s.replace("~1", "/").replace("~0", "~") if "~" in s else s for s in raw
                )
            if len(self._pointers) >= _POINTER_CACHE_SIZE:
                self._pointers.clear()
            self._pointers[p] = segs
        return segs

    def _append_text(
        self, fast: tuple[Any, Any, int, MessageChanged], v: str
    ) -> list[BackendEvent] | None:
        """A ``{"v": "text"}`` frame continuing the last string append, or None
        when the target is no longer a string (then the general path decides)."""
        parent, key, slot, changed = fast
        cur = parent[key]
        if type(cur) is not str:
            return None
        total = self._sizes.get(slot, 0) + len(v) + 1
        self._sizes[slot] = total
        if total > self._max_bytes:
            self.documents.pop(slot, None)
            self._fast = None
            return [Malformed(reason="message document over the size limit", fatal=True)]
        parent[key] = None  # see _apply_dict: lets CPython grow the string in place
        cur += v
        parent[key] = cur
        return [changed]

    def _delta(self, obj: dict[str, Any], size: int) -> list[BackendEvent]:
        fast = self._fast
        if fast is not None and len(obj) == 1:
            v = obj.get("v")
            if type(v) is str:
                appended = self._append_text(fast, v)
                if appended is not None:
                    return appended
        self._fast = None
        self._structural = False
        self._appended = None
        out: list[BackendEvent] = []
        c = obj.get("c", _MISSING)
        p = obj.get("p", _MISSING)
        o = obj.get("o", _MISSING)
        v = obj.get("v")
        if c is not _MISSING:
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                return [Malformed(reason="delta frame with a bad 'c'")]
            if c not in self.documents and len(self.documents) >= MAX_SLOTS:
                return [Malformed(reason="too many messages", fatal=True)]
            self._c = c
            if p is _MISSING and isinstance(v, dict) and "message" in v:
                # A new document: {"v": {message...}, "c": N} or {"o": "add", ...}.
                p, o = "", "add"
        # p and o: this frame's, else the carried ones (locals from here on).
        if p is _MISSING:
            p = self._p
        elif isinstance(p, str):
            self._p = p
        else:
            return [Malformed(reason="delta frame with a bad 'p'")]
        if o is _MISSING:
            o = self._o
        elif isinstance(o, str):
            self._o = o
        else:
            return [Malformed(reason="delta frame with a bad 'o'")]
        if "v" not in obj and o != "remove":
            return [Malformed(reason="delta frame without a value")]
        slot = self._c
        self._cuts = []
        self._changed = False
        try:
            grow = self._apply(slot, p, o, v, 0, size)
        except _OpError as exc:
            out.append(Malformed(reason=f"{o} {p[:80]!r}: {exc}"))
            grow = 0
        except (RecursionError, MemoryError):
            self.documents.pop(slot, None)
            return [Malformed(reason="delta too deep or too large", fatal=True)]
        sizes = self._sizes
        total = sizes.get(slot, 0) + grow
        sizes[slot] = total
        if total > self._max_bytes:
            self.documents.pop(slot, None)
            return [Malformed(reason="message document over the size limit", fatal=True)]
        doc = self.documents.get(slot)
        if isinstance(doc, dict) and self._changed:
            if p == "" or p.startswith("/conversation_id"):
                self._conv(doc, out)
            dmsg = doc.get("message")
            if isinstance(dmsg, dict):
                msg = dmsg
                text_only = not self._structural
                cuts = self._cuts
                changed = _message_changed(slot, msg, tuple(cuts) if cuts else (), text_only)
                out.append(changed)
                appended = self._appended
                if text_only and appended is not None and o == "append" and len(out) == 1:
                    # A plain append carries no cuts: its event is what the
                    # frames that continue it report.
                    self._fast = (appended[0], appended[1], slot, changed)
            err = doc.get("error")
            if err and (p == "" or p.startswith("/error")):
                key = f"{slot}:{err!r}"[:300]
                if key not in self._errors_seen:
                    self._errors_seen.add(key)
                    out.append(self._error(err, doc.get("error_code")))
        return out

    def _apply(self, slot: int, p: str, o: str, v: Any, depth: int, size: int) -> int:
        """Apply one op; returns the estimated growth of the document in bytes
        (a cheap upper bound, so the size limit costs O(1) per text append)."""
        segs = self._pointer(p)
        if o == "patch":
            if not isinstance(v, list):
                raise _OpError("patch value is not a list")
            if depth > 4:
                raise _OpError("patch nested too deeply")
            grow = 0
            bad: list[str] = []
            sp, so = p, "add"
            for sub in v:
                if not isinstance(sub, dict):
                    bad.append("sub-op is not an object")
                    continue
                sp = sub.get("p", sp)
                so = sub.get("o", so)
                if not isinstance(sp, str) or not isinstance(so, str):
                    bad.append("sub-op with a bad 'p' or 'o'")
                    continue
                if "v" not in sub and so != "remove":
                    bad.append("sub-op without a value")
                    continue
                try:
                    grow += self._apply(slot, sp, so, sub.get("v"), depth + 1, size)
                except _OpError as exc:
                    bad.append(f"{so} {sp[:80]!r}: {exc}")
            if bad:
                # Report, but keep the ops that applied: one bad sub-op must not
                # lose the text appended by the others.
                self._sizes[slot] = self._sizes.get(slot, 0) + grow
                raise _OpError("; ".join(bad[:3]))
            return grow
        if isinstance(v, (dict, list)):
            limit = self._max_depth - len(segs)
            if self._nesting() > limit and _depth_over(v, limit):
                raise _OpError("value nests too deeply")
            est = size
        elif isinstance(v, str):
            est = len(v) + 1
        else:
            est = 8
        docs = self.documents
        if not segs:
            self._structural = True
            if o in ("add", "replace"):
                docs[slot] = v
                self._sizes[slot] = 0
                self._changed = True
                return size
            if o == "remove":
                docs.pop(slot, None)
                self._sizes[slot] = 0
                return 0
            doc = docs.get(slot, _MISSING)
            if doc is _MISSING:
                raise _OpError("no document")
            if o == "append" and isinstance(doc, dict) and isinstance(v, dict):
                doc.update(v)
                self._changed = True
                return est
            raise _OpError("cannot apply to the document root")
        parent = docs.get(slot, _MISSING)
        if parent is _MISSING:
            raise _OpError("no document")
        for seg in segs[:-1]:
            if isinstance(parent, dict):
                parent = parent.get(seg, _MISSING)
                if parent is _MISSING:
                    raise _OpError("path not found")
            elif isinstance(parent, list):
                parent = parent[_index(seg, len(parent), allow_end=False)]
            else:
                raise _OpError("path goes through a scalar")
        last = segs[-1]
        self._appended = None
        if isinstance(parent, dict):
            grow = self._apply_dict(parent, last, p, o, v, est)
        elif isinstance(parent, list):
            grow = self._apply_list(parent, last, p, o, v, est)
        else:
            raise _OpError("path goes through a scalar")
        if self._appended is None:
            self._structural = True  # anything but a plain string append
        self._changed = True
        return grow

    def _apply_dict(
        self, parent: dict[str, Any], key: str, p: str, o: str, v: Any, est: int
    ) -> int:
        if o == "append":
            cur = parent.get(key, _MISSING)
            if isinstance(cur, str) and isinstance(v, str):
                # Drop the dict's reference first, so that CPython can grow the
                # string in place (amortised O(len(v)) instead of a full copy).
                parent[key] = None
                cur += v
                parent[key] = cur
                self._appended = (parent, key)
                return est
            return self._append_other(cur, v, est, lambda x: parent.__setitem__(key, x))
        if o in ("add", "replace"):
            cur = parent.get(key)
            if isinstance(cur, str):
                self._cut_string(p, cur, v)
            parent[key] = v
            return est
        if o == "remove":
            if key not in parent:
                raise _OpError("nothing to remove")
            if isinstance(parent[key], str):
                self._cuts.append((p, 0))
            del parent[key]
            return 1
        if o == "truncate":
            cur = parent.get(key, _MISSING)
            return self._truncate(cur, v, p, lambda x: parent.__setitem__(key, x))
        raise _OpError(f"unknown op {o[:20]!r}")

    def _apply_list(self, parent: list[Any], seg: str, p: str, o: str, v: Any, est: int) -> int:
        n = len(parent)
        if o == "add":
            i = _index(seg, n, allow_end=True)
            if i == n:
                parent.append(v)
            else:
                parent.insert(i, v)
            return est
        if o == "replace":
            i = _index(seg, n, allow_end=False)
            if isinstance(parent[i], str):
                self._cut_string(p, parent[i], v)
            parent[i] = v
            return est
        if o == "append":
            i = _index(seg, n, allow_end=True)
            if i == n:
                parent.append(v)
                return est
            cur = parent[i]
            if isinstance(cur, str) and isinstance(v, str):
                parent[i] = None
                cur += v
                parent[i] = cur
                self._appended = (parent, i)
                return est
            return self._append_other(cur, v, est, lambda x: parent.__setitem__(i, x))
        if o == "remove":
            i = _index(seg, n, allow_end=False)
            del parent[i]
            self._cuts.append((p.rpartition("/")[0], i))
            return 1
        if o == "truncate":
            i = _index(seg, n, allow_end=False)
            return self._truncate(parent[i], v, p, lambda x: parent.__setitem__(i, x))
        raise _OpError(f"unknown op {o[:20]!r}")

    @staticmethod
    def _append_other(cur: Any, v: Any, est: int, setter: Any) -> int:
        if cur is _MISSING or cur is None:
            setter(v)
        elif isinstance(cur, list):
            if isinstance(v, list):
                cur.extend(v)
            else:
                cur.append(v)
        elif isinstance(cur, dict) and isinstance(v, dict):
            cur.update(v)
        else:
            raise _OpError(f"cannot append {type(v).__name__} to {type(cur).__name__}")
        return est

    def _truncate(self, cur: Any, v: Any, p: str, setter: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _OpError("truncate length is not a non-negative integer")
        if isinstance(cur, str):
            if v < len(cur):
                setter(cur[:v])
                self._cuts.append((p, v))
        elif isinstance(cur, list):
            if v < len(cur):
                del cur[v:]
                self._cuts.append((p, v))
        else:
            raise _OpError("truncate target is not a string or list")
        return 1

    def _cut_string(self, p: str, old: str, new: Any) -> None:
        if isinstance(new, str) and new.startswith(old):
            return
        keep = 0
        if isinstance(new, str):
            for a, b in zip(old, new, strict=False):
                if a != b:
                    break
                keep += 1
        self._cuts.append((p, keep))
