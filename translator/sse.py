"""Bytes to server-sent events, sans I/O.

Two small layers, each with ``feed(...) -> list`` and ``flush()``:

* :class:`LineDecoder`: bytes to text lines. CR, LF and CRLF all end a line, a CR
  at the end of one chunk followed by LF at the start of the next is one line
  break, and UTF-8 is decoded only on whole lines (invalid bytes are replaced,
  never raised), so a character split across chunks is never broken and
  U+2028 inside data is not a line break.
* :class:`SSEDecoder`: lines to :class:`ServerSentEvent` values, following the
  WHATWG event-stream interpretation rules:
  https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

:class:`EventStream` chains both. Nothing here knows about ChatGPT: ``[DONE]``,
``delta_encoding`` and JSON are handled by :mod:`translator.backend`.
"""

from __future__ import annotations

from dataclasses import dataclass

from errors import UpstreamError

__all__ = ["EventStream", "LineDecoder", "SSEDecoder", "ServerSentEvent"]

# A single line longer than this is not an event stream we can trust; buffering it
# would let one broken upstream connection exhaust the proxy's memory.
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSentEvent:
    """One dispatched event. ``event`` defaults to ``"message"`` as in the spec."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class LineDecoder:
    """Split a byte stream into decoded lines (without their terminators)."""

    __slots__ = ("_buf", "_skip_lf", "_max")

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        # The previous chunk ended with CR: a LF at the start of the next one
        # belongs to the same line break.
        self._skip_lf = False
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[str]:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        if not data:
            return []
        # Byte tests with an int (0x0A, 0x0D) are several times cheaper than with a
        # bytes needle. The buffer never holds a CR (a CR always ends a line), so
        # looking at the new data is enough.
        if 0x0D not in data:
            # The backend's own line ends: decode once, split once. (0x0A never
            # occurs inside a UTF-8 sequence, so this decodes exactly as line by
            # line would, replacement characters included.)
            if data[-1] == 0x0A:
                # The common case, a chunk of whole lines: nothing is left over.
                if self._buf:
                    data = bytes(self._buf) + data
                    self._buf.clear()
                lines = data.decode("utf-8", "replace").split("\n")
                del lines[-1]  # the empty text after the last LF
                return lines
            end = data.rfind(0x0A) + 1
            if not end:
                # While a long line trickles in: no copy of the buffer.
                self._buf += data
                if len(self._buf) > self._max:
                    self._buf.clear()
                    raise UpstreamError("the backend sent an event stream line that is too long")
                return []
            head = bytes(self._buf) + data[: end - 1] if self._buf else data[: end - 1]
            self._buf.clear()
            self._buf += data[end:]
            if len(self._buf) > self._max:
                self._buf.clear()
                raise UpstreamError("the backend sent an event stream line that is too long")
            return head.decode("utf-8", "replace").split("\n")
        buf = bytes(self._buf) + data if self._buf else data
        self._buf.clear()
        # bytes.splitlines breaks only on \r, \n and \r\n (unlike str.splitlines,
        # which would also break on U+2028, U+0085 and friends).
        pieces = buf.splitlines(keepends=True)
        last = pieces[-1]
        if not last.endswith((b"\n", b"\r")):
            self._buf += last
            pieces.pop()
            if len(self._buf) > self._max:
                self._buf.clear()
                raise UpstreamError("the backend sent an event stream line that is too long")
        elif last.endswith(b"\r"):
            self._skip_lf = True
        out: list[str] = []
        for piece in pieces:
            if piece.endswith(b"\r\n"):
                piece = piece[:-2]
            else:
                piece = piece[:-1]
            out.append(piece.decode("utf-8", "replace"))
        return out

    def flush(self) -> list[str]:
        """End of input: an unterminated last line is still a line."""
        self._skip_lf = False
        if not self._buf:
            return []
        line = self._buf.decode("utf-8", "replace")
        self._buf.clear()
        return [line]


class SSEDecoder:
    """Turn lines into events by the WHATWG field rules (see the module docstring)."""

    __slots__ = ("_event", "_data", "_last_id", "_retry", "_pending", "_first")

    def __init__(self) -> None:
        self._first = True
        self._event = ""
        self._data: list[str] = []  # empty: the data buffer is empty
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending = False

    def feed(self, line: str) -> ServerSentEvent | None:
        """Feed one line (without terminator); returns an event on a blank line."""
        if self._first:
            self._first = False
            if line[:1] == "\ufeff":  # the spec strips one leading BOM
                line = line[1:]
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment, for example ": ping - 2024-10-16 ..."
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        # Trailing spaces (the backend pads some data lines) stay in the value:
        # JSON parsing in the next layer tolerates them.
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\x00" not in value:
                self._last_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        else:
            return None  # unknown fields are ignored
        self._pending = True
        return None

    def feed_lines(self, lines: list[str]) -> list[tuple[str, str]]:
        """Fast path for many lines: ``(event type, data)`` pairs of the dispatched
        events (same rules as :meth:`feed`; ``id``/``retry`` are tracked but not
        returned)."""
        out: list[tuple[str, str]] = []
        if self._first and lines:
            ev = self.feed(lines[0])  # the BOM rule, once per stream
            if ev is not None:
                out.append((ev.event, ev.data))
            lines = lines[1:]
        for line in lines:
            if not line:
                # _dispatch_raw, inline: one blank line per event.
                if self._pending:
                    self._pending = False
                    event, self._event = self._event, ""
                    self._retry = None
                    data = self._data
                    if data:
                        out.append(
                            (event or "message", data[0] if len(data) == 1 else "\n".join(data))
                        )
                        self._data = []
            elif line.startswith("data: "):  # the common "data: ..." line
                self._data.append(line[6:])
                self._pending = True
            elif line.startswith("event: "):  # as feed() reads it
                self._event = line[7:]
                self._pending = True
            else:
                ev = self.feed(line)
                if ev is not None:
                    out.append((ev.event, ev.data))
        return out

    def _dispatch(self) -> ServerSentEvent | None:
        raw = self._dispatch_raw()
        if raw is None:
            return None
        return ServerSentEvent(event=raw[0], data=raw[1], id=self._last_id, retry=raw[2])

    def _dispatch_raw(self) -> tuple[str, str, int | None] | None:
        if not self._pending:
            return None
        self._pending = False
        event, self._event = self._event, ""
        retry, self._retry = self._retry, None
        if not self._data:
            # Spec: an empty data buffer dispatches nothing (the event type resets).
            return None
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        self._data = []
        return (event or "message", data, retry)

    def flush(self) -> ServerSentEvent | None:
        """End of input. The spec discards an event that lacks its final blank
        line; we dispatch it instead, so that a backend closing right after
        ``data: [DONE]`` still ends the stream properly (a cut JSON event just
        fails to parse in the next layer)."""
        return self._dispatch()


class EventStream:
    """Bytes in, :class:`ServerSentEvent` values out."""

    __slots__ = ("_lines", "_sse")

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = LineDecoder(max_line_bytes=max_line_bytes)
        self._sse = SSEDecoder()

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        sse = self._sse
        for line in self._lines.feed(data):
            ev = sse.feed(line)
            if ev is not None:
                out.append(ev)
        return out

    def feed_pairs(self, data: bytes) -> list[tuple[str, str]]:
        """Like :meth:`feed`, as ``(event type, data)`` pairs (the hot path)."""
        return self._sse.feed_lines(self._lines.feed(data))

    def flush(self) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        for line in self._lines.flush():
            ev = self._sse.feed(line)
            if ev is not None:
                out.append(ev)
        ev = self._sse.flush()
        if ev is not None:
            out.append(ev)
        return out
