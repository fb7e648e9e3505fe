"""The Codex backend's event stream as typed events (``docs/responses-api.md``).

:class:`Decoder` turns the bytes of ``/backend-api/codex/responses`` (SSE, fed
at any chunking) into :class:`Event` objects of a few types that callers match
on: the items and deltas that make an answer, and the three ways it ends. The
JSON payload stays in ``data`` untouched, so a caller that re-emits an event
(``translator/responses/encode.py``) loses nothing the backend sent.

:class:`Collector` is the state of one response fed from those events: the
items finished so far in output order (the backend's ``response.completed``
carries ``output: []``, so this is where the output comes from), the usage and
how it ended. Both ``/v1/responses`` and chat completions on the Codex backend
build on these two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# --- typed events ---------------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """One event; ``data`` is its JSON object as sent (``data["type"] == type``)."""

    type: str
    data: dict[str, Any]

    @property
    def output_index(self) -> int:
        value = self.data.get("output_index")
        return value if isinstance(value, int) else -1


class Created(Event):
    """``response.created`` / ``response.in_progress`` / ``response.queued``."""

    __slots__ = ()

    @property
    def response(self) -> dict[str, Any]:
        value = self.data.get("response")
        return value if isinstance(value, dict) else {}


class ItemAdded(Event):
    __slots__ = ()

    @property
    def item(self) -> dict[str, Any]:
        value = self.data.get("item")
        return value if isinstance(value, dict) else {}


class ItemDone(ItemAdded):
    __slots__ = ()


class Delta(Event):
    """A piece of text: ``delta`` on output text, reasoning or arguments events."""

    __slots__ = ()

    @property
    def delta(self) -> str:
        value = self.data.get("delta")
        return value if isinstance(value, str) else ""

    @property
    def item_id(self) -> str:
        value = self.data.get("item_id")
        return value if isinstance(value, str) else ""


class TextDelta(Delta):
    """``response.output_text.delta``."""

    __slots__ = ()


class ReasoningDelta(Delta):
    """``response.reasoning_summary_text.delta`` or ``response.reasoning_text.delta``."""

    __slots__ = ()


class ArgumentsDelta(Delta):
    """``response.function_call_arguments.delta`` / ``custom_tool_call_input.delta``."""

    __slots__ = ()


class Terminal(Event):
    """The end of the response: completed, incomplete, failed or an ``error`` event."""

    __slots__ = ()

    @property
    def response(self) -> dict[str, Any]:
        value = self.data.get("response")
        return value if isinstance(value, dict) else {}


class Completed(Terminal):
    __slots__ = ()


class Incomplete(Terminal):
    __slots__ = ()


class Failed(Terminal):
    """``response.failed``, or an ``error`` event (``response`` is then empty)."""

    __slots__ = ()

    @property
    def error(self) -> dict[str, Any]:
        """``{code, message, ...}`` from ``response.error`` or the ``error`` event."""
        nested = self.response.get("error")
        if isinstance(nested, dict):
            return nested
        if self.type == "error":
            inner = self.data.get("error")
            if isinstance(inner, dict):  # the WebSocket form {"type":"error","error":{...}}
                return inner
            return {k: v for k, v in self.data.items() if k not in ("type", "sequence_number")}
        return {}


_TYPES: dict[str, type[Event]] = {
    "response.created": Created,
    "response.in_progress": Created,
    "response.queued": Created,
    "response.output_item.added": ItemAdded,
    "response.output_item.done": ItemDone,
    "response.output_text.delta": TextDelta,
    "response.reasoning_summary_text.delta": ReasoningDelta,
    "response.reasoning_text.delta": ReasoningDelta,
    "response.function_call_arguments.delta": ArgumentsDelta,
    "response.custom_tool_call_input.delta": ArgumentsDelta,
    "response.completed": Completed,
    "response.incomplete": Incomplete,
    "response.failed": Failed,
    "error": Failed,
}


def event_of(data: dict[str, Any]) -> Event:
    """The typed event for one JSON payload."""
    kind = data.get("type")
    kind = kind if isinstance(kind, str) else ""
    return _TYPES.get(kind, Event)(kind, data)


# --- decoding the SSE bytes -------------------------------------------------------------


class Decoder:
    """SSE bytes → events, fed in chunks of any size.

    Dispatch is on the JSON's ``type`` (the ``event:`` line is ignored, as Codex
    does). An event ends at a blank line, or when an ``event:`` line follows a
    ``data:`` line without one (some recordings are stored that way). Payloads
    that are not JSON objects (``[DONE]``, comments) are skipped.
    """

    __slots__ = ("_buffer", "_data", "events_seen")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self.events_seen = 0

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk if self._buffer else chunk
        out: list[Event] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(buffer[start:end], out)
            start = end + 1
        self._buffer = buffer[start:]
        return out

    def finish(self) -> list[Event]:
        """The events still pending at the end of the stream."""
        out: list[Event] = []
        if self._buffer:
            buffer, self._buffer = self._buffer, b""
            self._line(buffer, out)
        self._dispatch(out)
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch(out)
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:") and self._data:
            self._dispatch(out)

    def _dispatch(self, out: list[Event]) -> None:
        if not self._data:
            return
        raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        self._data = []
        if not raw.startswith(b"{"):
            return
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if isinstance(data, dict):
            self.events_seen += 1
            out.append(event_of(data))


# --- the state of one response ----------------------------------------------------------


@dataclass(slots=True)
class Collector:
    """What one response amounts to so far, fed every event in order."""

    response: dict[str, Any] | None = None
    #: Finished items by output index (``output_item.done``).
    done: dict[int, dict[str, Any]] | None = None
    #: Items added but not finished yet, by output index.
    open: dict[int, dict[str, Any]] | None = None
    terminal: Terminal | None = None
    #: Whether anything a client would see (an item, a delta) has come.
    has_output: bool = False

    def feed(self, event: Event) -> None:
        if isinstance(event, ItemAdded):
            self.has_output = True
            target = self.done if isinstance(event, ItemDone) else self.open
            if target is None:
                target = {}
                if isinstance(event, ItemDone):
                    self.done = target
                else:
                    self.open = target
            target[event.output_index] = event.item
            if isinstance(event, ItemDone) and self.open:
                self.open.pop(event.output_index, None)
        elif isinstance(event, Delta):
            self.has_output = True
        elif isinstance(event, Created):
            self.response = event.response
        elif isinstance(event, Terminal):
            self.terminal = event
            if event.response:
                self.response = event.response

    def output(self) -> list[dict[str, Any]]:
        """The finished items in output order (what ``response.output`` should hold)."""
        if not self.done:
            return []
        return [self.done[i] for i in sorted(self.done)]

    def usage(self) -> dict[str, Any] | None:
        usage = self.terminal.response.get("usage") if self.terminal is not None else None
        return usage if isinstance(usage, dict) else None
