"""Chat completions on the Codex backend: the request mapped, the events translated.  Pure.

:func:`responses_body` maps a parsed chat request onto a ``/v1/responses`` body (system and
developer text → ``instructions``, messages → input items, assistant ``tool_calls`` →
``function_call`` items, ``tool`` messages → ``function_call_output``, tools flattened,
``tool_choice`` in every form, ``reasoning_effort`` → ``reasoning`` with a summary,
``response_format`` → ``text.format``; docs/codex-chat.md). The responses path
(``translator/responses/request.py``) turns that into the backend's body.

:class:`ChatEvents` turns the backend's typed events (``translator/responses/events.py``) into
what a chat completion is made of: text, reasoning (the summary), tool calls indexed by call
(not by output item: a reasoning or message item before them does not count), one end with the
finish reason and the usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errors import InvalidRequest
from translator.options import Options
from translator.request import ChatRequest, FilePart, ImagePart, InputAudioPart, Message, TextPart
from translator.responses.events import (
    ArgumentsDelta,
    Completed,
    Event,
    Incomplete,
    ItemAdded,
    ItemDone,
    ReasoningDelta,
    TextDelta,
)

__all__ = ["CallArgs", "CallStart", "ChatEvents", "End", "responses_body"]


# ---------------------------------------------------------------- the request


def responses_body(req: ChatRequest, *, model: str) -> dict[str, Any]:
    """A Responses API body (``stream: true``, nothing stored) with the chat's conversation."""
    instructions = [m.text for m in req.messages if m.role in ("system", "developer") and m.text]
    items: list[dict[str, Any]] = []
    for i, message in enumerate(req.messages):
        items.extend(_items(i, message))
    body: dict[str, Any] = {
        "model": model,
        "input": items,
        "stream": True,
        "store": False,
    }
    if instructions:
        body["instructions"] = "\n\n".join(instructions)
    opts = req.options
    if opts.tools:
        body["tools"] = [_tool(t) for t in opts.tools]
        body["tool_choice"] = _choice(opts)
        body["parallel_tool_calls"] = opts.parallel_tool_calls
    if req.reasoning_effort is not None:
        body["reasoning"] = {"effort": req.reasoning_effort, "summary": "auto"}
    fmt = opts.response_format
    if fmt is not None:
        if fmt.kind == "json_schema" and fmt.schema is not None:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": fmt.name,
                    "schema": dict(fmt.schema),
                    "strict": fmt.strict,
                }
            }
        else:
            body["text"] = {"format": {"type": "json_object"}}
    return body


def _items(i: int, m: Message) -> list[dict[str, Any]]:
    if m.role in ("system", "developer"):
        return []
    if m.role == "tool":
        return [{"type": "function_call_output", "call_id": m.tool_call_id, "output": m.text}]
    if m.role == "function":  # legacy: the call had no id, so the name stands in for one
        return [{"type": "function_call_output", "call_id": f"fc_{m.name}", "output": m.text}]
    if m.role == "assistant":
        out: list[dict[str, Any]] = []
        if m.text:
            out.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": m.text}],
                }
            )
        for call in m.tool_calls:
            out.append(
                {
                    "type": "function_call",
                    "call_id": call.id or f"fc_{call.name}",
                    "name": call.name,
                    "arguments": call.arguments or "{}",
                }
            )
        return out
    parts = [_part(f"messages[{i}].content[{j}]", p) for j, p in enumerate(m.content)]
    return [{"type": "message", "role": "user", "content": parts}]


def _part(where: str, part: object) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"type": "input_image", "image_url": part.url}
        if part.detail:
            image["detail"] = part.detail
        return image
    if isinstance(part, FilePart) and part.file_data:
        file: dict[str, Any] = {"type": "input_file", "file_data": part.file_data}
        if part.filename:
            file["filename"] = part.filename
        return file
    kind = "input_audio" if isinstance(part, InputAudioPart) else "file without file_data"
    raise InvalidRequest(
        f"Invalid '{where}': the Codex backend takes no {kind} parts.",
        param=where,
        code="unsupported_value",
    )


def _tool(tool: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": dict(tool.parameters or {"type": "object", "properties": {}}),
        "strict": tool.strict,
    }


def _choice(opts: Options) -> Any:
    choice = opts.tool_choice
    if choice.mode == "named":
        return {"type": "function", "name": choice.name}
    return choice.mode


# ---------------------------------------------------------------- the answer


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallArgs:
    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class End:
    reason: str  # stop, tool_calls, length, content_filter
    usage: dict[str, Any] | None


Out = str | tuple[str, str] | CallStart | CallArgs | End  # str: text; ("reasoning", text)


class ChatEvents:
    """``feed(event) -> list[Out]``; text is a ``str``, reasoning ``("reasoning", text)``."""

    def __init__(self) -> None:
        self.calls = 0
        self._index: dict[str, int] = {}  # function_call item id -> call index
        self._streamed: set[int] = set()  # calls whose arguments came as deltas
        self._sections = 0

    def feed(self, event: Event) -> list[Out]:
        if isinstance(event, TextDelta):
            return [event.delta] if event.delta else []
        if isinstance(event, ReasoningDelta):
            return [("reasoning", event.delta)] if event.delta else []
        if isinstance(event, ArgumentsDelta):
            index = self._index.get(event.item_id)
            if index is None or not event.delta:
                return []
            self._streamed.add(index)
            return [CallArgs(index, event.delta)]
        if isinstance(event, ItemDone):
            return self._done(event.item)
        if isinstance(event, ItemAdded):
            item = event.item
            if item.get("type") == "function_call":
                return self._start(item)
            return []
        if isinstance(event, (Completed, Incomplete)):
            return [self._end(event)]
        if event.type == "response.reasoning_summary_part.added":
            self._sections += 1
            if self._sections > 1:  # sections read as paragraphs, not "**A****B**"
                return [("reasoning", "\n\n")]
        return []

    def _start(self, item: dict[str, Any]) -> list[Out]:
        index = self.calls
        self.calls += 1
        self._index[str(item.get("id") or f"#{index}")] = index
        out: list[Out] = [CallStart(index, str(item.get("call_id") or ""), str(item.get("name")))]
        args = item.get("arguments")
        if isinstance(args, str) and args:
            self._streamed.add(index)
            out.append(CallArgs(index, args))
        return out

    def _done(self, item: dict[str, Any]) -> list[Out]:
        if item.get("type") != "function_call":
            return []
        out: list[Out] = []
        key = str(item.get("id") or "")
        index = self._index.get(key)
        if index is None:  # no "added" event: the whole call now
            out += self._start(item)
            return out
        args = item.get("arguments")
        if index not in self._streamed and isinstance(args, str) and args:
            out.append(CallArgs(index, args))
        return out

    def _end(self, event: Completed | Incomplete) -> End:
        response = event.response
        usage = response.get("usage")
        if isinstance(event, Incomplete):
            details = response.get("incomplete_details") or {}
            why = details.get("reason") if isinstance(details, dict) else None
            reason = "content_filter" if why == "content_filter" else "length"
        else:
            reason = "tool_calls" if self.calls else "stop"
        return End(reason, usage if isinstance(usage, dict) else None)


def chat_usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    """The backend's usage in chat completions' terms (the cached and reasoning details)."""
    if usage is None:
        return None

    def number(obj: Any, key: str) -> int:
        value = obj.get(key) if isinstance(obj, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return {
        "prompt_tokens": number(usage, "input_tokens"),
        "completion_tokens": number(usage, "output_tokens"),
        "cached_tokens": number(usage.get("input_tokens_details"), "cached_tokens"),
        "reasoning_tokens": number(usage.get("output_tokens_details"), "reasoning_tokens"),
    }
