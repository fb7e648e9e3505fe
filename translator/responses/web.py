"""A web-conversation answer as Responses events (``docs/responses-api.md``).

The web conversation gives text and reasoning pieces; :class:`WebEvents` turns
them into the same typed events the Codex backend sends, in the order the
SDKs' accumulators require: ``response.created``, then per item ``added``,
its part or summary part, deltas, the ``done`` events, then one terminal
event. Reasoning becomes a ``reasoning`` item with summary text, the answer a
``message`` item. Feed the events to :class:`translator.responses.encode.ResponseEncoder`.
"""

from __future__ import annotations

from typing import Any

from translator.responses.encode import new_id
from translator.responses.events import Event, event_of


def _ev(data: dict[str, Any]) -> Event:
    return event_of(data)


class WebEvents:
    def __init__(self) -> None:
        self._index = -1
        self._kind: str | None = None  # "reasoning" | "message": the open item
        self._id = ""
        self._text: list[str] = []
        self.started = False

    def start(self) -> list[Event]:
        self.started = True
        response = {"status": "in_progress", "output": []}
        return [
            _ev({"type": "response.created", "response": response}),
            _ev({"type": "response.in_progress", "response": response}),
        ]

    def text(self, delta: str) -> list[Event]:
        return self._piece("message", delta)

    def reasoning(self, delta: str) -> list[Event]:
        return self._piece("reasoning", delta)

    def call(
        self, call_id: str, name: str, pieces: tuple[str, ...], *, custom: bool = False
    ) -> list[Event]:
        """One emulated tool call as its own item (translator/toolcalls/): a
        ``function_call`` with argument deltas, or a ``custom_tool_call`` with its input."""
        out = self._close()
        self._index += 1
        where = {"output_index": self._index}
        text = "".join(pieces)
        if custom:
            item_id, kind, key, stem = (
                new_id("ctc_"),
                "custom_tool_call",
                "input",
                "custom_tool_call_input",
            )
        else:
            item_id, kind, key, stem = (
                new_id("fc_"),
                "function_call",
                "arguments",
                "function_call_arguments",
            )
        item: dict[str, Any] = {"id": item_id, "type": kind, "status": "in_progress"}
        item.update({"call_id": call_id, "name": name, key: ""})
        out.append(_ev({"type": "response.output_item.added", **where, "item": item}))
        ids = {"item_id": item_id, **where}
        for piece in pieces:
            out.append(_ev({"type": f"response.{stem}.delta", **ids, "delta": piece}))
        out.append(_ev({"type": f"response.{stem}.done", **ids, key: text}))
        done = {**item, "status": "completed", key: text}
        out.append(_ev({"type": "response.output_item.done", **where, "item": done}))
        return out

    def _piece(self, kind: str, delta: str) -> list[Event]:
        if not delta:
            return []
        out = self._close() if self._kind not in (None, kind) else []
        if self._kind is None:
            out += self._open(kind)
        self._text.append(delta)
        where = {"item_id": self._id, "output_index": self._index}
        if kind == "message":
            data = {"type": "response.output_text.delta", **where, "content_index": 0}
            data.update(delta=delta, logprobs=[])
        else:
            data = {"type": "response.reasoning_summary_text.delta", **where, "summary_index": 0}
            data["delta"] = delta
        out.append(_ev(data))
        return out

    def _open(self, kind: str) -> list[Event]:
        self._kind, self._index, self._text = kind, self._index + 1, []
        where = {"output_index": self._index}
        if kind == "message":
            self._id = new_id("msg_")
            item: dict[str, Any] = {"id": self._id, "type": "message", "status": "in_progress"}
            item.update(content=[], role="assistant")
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            return [
                _ev({"type": "response.output_item.added", **where, "item": item}),
                _ev(
                    {
                        "type": "response.content_part.added",
                        "item_id": self._id,
                        **where,
                        "content_index": 0,
                        "part": part,
                    }
                ),
            ]
        self._id = new_id("rs_")
        reasoning: dict[str, Any] = {"id": self._id, "type": "reasoning", "summary": []}
        return [
            _ev({"type": "response.output_item.added", **where, "item": reasoning}),
            _ev(
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": self._id,
                    **where,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }
            ),
        ]

    def _close(self) -> list[Event]:
        if self._kind is None:
            return []
        text = "".join(self._text)
        where = {"item_id": self._id, "output_index": self._index}
        item: dict[str, Any]
        if self._kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            item = {"id": self._id, "type": "message", "status": "completed"}
            item.update(content=[part], role="assistant")
            out = [
                _ev(
                    {
                        "type": "response.output_text.done",
                        **where,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    }
                ),
                _ev(
                    {
                        "type": "response.content_part.done",
                        **where,
                        "content_index": 0,
                        "part": part,
                    }
                ),
            ]
        else:
            summary = {"type": "summary_text", "text": text}
            item = {"id": self._id, "type": "reasoning", "summary": [summary]}
            out = [
                _ev(
                    {
                        "type": "response.reasoning_summary_text.done",
                        **where,
                        "summary_index": 0,
                        "text": text,
                    }
                ),
                _ev(
                    {
                        "type": "response.reasoning_summary_part.done",
                        **where,
                        "summary_index": 0,
                        "part": summary,
                    }
                ),
            ]
        out.append(
            _ev({"type": "response.output_item.done", "output_index": self._index, "item": item})
        )
        self._kind = None
        return out

    def finish(self, usage: dict[str, Any], *, incomplete: str | None = None) -> list[Event]:
        """Close the open item and end: completed, or incomplete for ``incomplete`` reason."""
        out = self._close()
        if incomplete:
            response = {
                "status": "incomplete",
                "incomplete_details": {"reason": incomplete},
                "usage": usage,
            }
            out.append(_ev({"type": "response.incomplete", "response": response}))
        else:
            response = {"status": "completed", "usage": usage}
            out.append(_ev({"type": "response.completed", "response": response}))
        return out
