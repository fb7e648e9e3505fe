"""Answer streams: a generated turn as a list of SSE chunks, in delta-v1 or legacy form.

A turn is first written as a script of steps (delta payloads, plain data objects, pings, an empty
`data: ` line, `[DONE]`); `render_v1` turns it into bytes, `render_legacy` replays the deltas on
documents and emits the full message after each (docs/backend-protocol.md#full-state-events). One
chunk = one SSE
block = one socket write. `Chunk.counted` says whether a client's SSE parser dispatches it, which
is how resume offsets count (docs/backend-2026.md#resume: pings, empty data and [DONE] do not).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import answers
from .deltas import DeltaDecoder

IMAGE_TOOL = "t2uay3k.sj1i4kz"
PADS = [1, 0, 5, 2, 0, 6, 3, 0, 4, 1, 7, 0]  # trailing spaces on data lines, as captures show


@dataclass(frozen=True)
class Chunk:
    data: bytes
    counted: bool


@dataclass(frozen=True)
class Step:
    kind: str  # "delta" | "plain" | "ping" | "empty" | "done" | "encoding"
    obj: Any = None


@dataclass(kw_only=True)
class Image:
    file_id: str
    asset_pointer: str
    size_bytes: int
    width: int
    height: int


@dataclass(kw_only=True)
class Turn:
    conversation_id: str
    model: str
    prompt: str
    user_message: dict[str, Any]
    answer: str
    resume_token: str
    picture: bool = False
    async_image: bool = False
    moderation: bool = False
    image_role: str = "assistant"
    images: list[Image] = field(default_factory=list)
    gizmo_id: str | None = None
    plan_type: str = "plus"
    #: the model that "answers" when it is not the one asked for (a plan's
    #: answer_model), and the backend's note on why (model_adjustments)
    answer_model: str | None = None
    model_adjustments: list[str] = field(default_factory=list)
    #: the turn will be handed off (its resume token is then of kind "topic")
    handoff: bool = False

    @property
    def served(self) -> str:
        return self.answer_model or self.model

    def served_meta(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"model_slug": self.served}
        if self.model_adjustments:
            extra["model_adjustments"] = list(self.model_adjustments)
        return extra


@dataclass
class Script:
    steps: list[Step]
    messages: list[dict[str, Any]]  # final state of every message document, in order
    late_messages: list[dict[str, Any]] = field(default_factory=list)  # async image results


def _uuid() -> str:
    return str(uuid.uuid4())


def _msg(
    role: str,
    content: dict[str, Any],
    *,
    status: str = "finished_successfully",
    end_turn: bool | None = None,
    weight: float = 1.0,
    metadata: dict[str, Any] | None = None,
    recipient: str = "all",
    channel: str | None = None,
    name: str | None = None,
    create_time: float | None = None,
) -> dict[str, Any]:
    return {
        "id": _uuid(),
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": create_time if create_time is not None else time.time(),
        "update_time": None,
        "content": content,
        "status": status,
        "end_turn": end_turn,
        "weight": weight,
        "metadata": metadata or {},
        "recipient": recipient,
        "channel": channel,
    }


def _text(text: str = "") -> dict[str, Any]:
    return {"content_type": "text", "parts": [text]}


class _Builder:
    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.steps: list[Step] = []
        self.c = -1
        self.request_id = _uuid()
        self.turn_exchange_id = _uuid()

    def wrap(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "message": message,
            "conversation_id": self.turn.conversation_id,
            "error": None,
            "error_code": None,
        }

    def delta(self, obj: dict[str, Any]) -> None:
        self.steps.append(Step("delta", obj))

    def plain(self, obj: dict[str, Any]) -> None:
        self.steps.append(Step("plain", obj))

    def typed(self, type_: str, **fields: Any) -> None:
        self.plain({"type": type_, **fields, "conversation_id": self.turn.conversation_id})

    def marker(self, message_id: str) -> None:
        # Key order as in the captures: conversation_id second.
        self.plain(
            {
                "type": "message_marker",
                "conversation_id": self.turn.conversation_id,
                "message_id": message_id,
                "marker": "user_visible_token",
                "event": "first",
            }
        )

    def document(self, message: dict[str, Any], form: str) -> None:
        """Start a new message document; form is "root" | "v" | "add" (the three real shapes)."""
        self.c += 1
        if form == "root":
            self.delta({"p": "", "o": "add", "v": self.wrap(message), "c": self.c})
        elif form == "add":
            self.delta({"o": "add", "v": self.wrap(message), "c": self.c})
        else:
            self.delta({"v": self.wrap(message), "c": self.c})

    def meta(self, parent: str, **extra: Any) -> dict[str, Any]:
        return {
            "citations": [],
            "content_references": [],
            "request_id": self.request_id,
            "message_type": "next",
            **self.turn.served_meta(),
            "default_model_slug": "auto",
            "parent_id": parent,
            "turn_exchange_id": self.turn_exchange_id,
            "model_switcher_deny": [],
            **extra,
        }

    def stream_text(self, path: str, pieces: list[str]) -> None:
        """First piece in long form, the rest as `{"v": ...}` continuations."""
        for i, piece in enumerate(pieces):
            if i == 0:
                self.delta({"p": path, "o": "append", "v": piece})
            else:
                self.delta({"v": piece})


def _ping() -> Step:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    return Step("ping", now)


def build_turn(turn: Turn) -> Script:
    b = _Builder(turn)
    cid = turn.conversation_id
    b.steps.append(Step("encoding"))
    b.plain(
        {
            "type": "resume_conversation_token",
            "kind": "topic" if turn.async_image or turn.handoff else "conduit",
            "token": turn.resume_token,
            "conversation_id": cid,
        }
    )
    system = _msg(
        "system",
        _text(),
        end_turn=True,
        weight=0.0,
        metadata={"is_visually_hidden_from_conversation": True, "model_switcher_deny": []},
        create_time=0,
    )
    system["create_time"] = None
    b.document(system, "root")
    sent = turn.user_message
    user = _msg(
        "user",
        sent.get("content") or _text(turn.prompt),
        metadata={
            **(sent.get("metadata") or {}),
            "request_id": b.request_id,
            "turn_exchange_id": b.turn_exchange_id,
        },
    )
    user["id"] = sent.get("id") or user["id"]
    b.document(user, "v")
    context = _msg(
        "user",
        {"content_type": "user_editable_context", "user_profile": "", "user_instructions": ""},
        weight=1.0,
        metadata={
            "is_visually_hidden_from_conversation": True,
            "user_context_message_data": {},
            "is_user_system_message": True,
        },
    )
    b.document(context, "add")
    b.typed("input_message", input_message=user)
    b.steps.append(_ping())
    parent = user["id"]
    late: list[dict[str, Any]] = []

    style = answers.reasoning_style(turn.model)
    if turn.async_image:
        _async_image(b, parent, late)
    elif turn.picture:
        _image(b, parent)
    elif turn.moderation:
        _moderated(b, parent)
    else:
        if style == "tool":
            parent = _tool_reasoning(b, parent)
        elif style == "thoughts":
            parent = _thoughts(b, parent)
        _answer(b, parent, channel="final" if style == "thoughts" else None)
    b.typed(
        "server_ste_metadata",
        metadata={
            "conduit_prewarmed": False,
            "plan_type": turn.plan_type,
            "user_agent": "web_desktop",
            "tool_invoked": turn.picture or turn.async_image,
            "fast_convo": True,
            "warmup_state": "warm",
            "model_slug": turn.served,
            "did_auto_switch_to_reasoning": False,
            "is_autoswitcher_enabled": False,
            "request_id": b.request_id,
            "turn_exchange_id": b.turn_exchange_id,
            "turn_trace_id": _uuid(),
            "resume_with_websockets": turn.async_image,
            "streaming_async_status": False,
            "temporal_conversation_turn": False,
            "gizmo_id": turn.gizmo_id,
        },
    )
    b.typed("message_stream_complete")
    b.plain(
        {
            "type": "conversation_detail_metadata",
            "banner_info": None,
            "blocked_features": [],
            "model_limits": [],
            "limits_progress": [
                {
                    "feature_name": "image_gen",
                    "remaining": 117,
                    "reset_after": "2026-04-25T11:31:35.443744+00:00",
                }
            ],
            "default_model_slug": turn.model,
            "atlas_mode_enabled": None,
            "conversation_id": cid,
        }
    )
    b.typed("title_generation", title=_title(turn.prompt))
    b.steps.append(_ping())
    b.steps.append(Step("empty"))
    b.steps.append(Step("done"))

    decoder = DeltaDecoder()
    for step in b.steps:
        if step.kind == "delta":
            decoder.feed(step.obj)
    messages = [decoder.docs[i]["message"] for i in sorted(decoder.docs)]
    return Script(b.steps, messages, late)


def _title(prompt: str) -> str:
    words = re.findall(r"\w+", prompt)[:4]
    return " ".join(w.capitalize() for w in words) or "New chat"


def _answer(b: _Builder, parent: str, *, channel: str | None) -> None:
    turn = b.turn
    msg = _msg(
        "assistant",
        _text(),
        status="in_progress",
        metadata=b.meta(parent),
        channel=channel,
    )
    b.document(msg, "add" if b.c >= 3 else "v")
    b.marker(str(msg["id"]))
    parts = "/message/content/parts/0"
    pieces = answers.split_pieces(turn.answer)
    last = pieces.pop() if pieces else ""

    def take(n: int) -> list[str]:
        out = pieces[:n]
        del pieces[:n]
        return out

    first = take(1)
    b.stream_text(parts, first)
    if first and all(ord(ch) < 0x10000 for ch in first[0]):
        # A stray tail cut again within one patch (a patch applies as a whole, so a client
        # never saw the tail): a translator ignoring `truncate` shows garbage. The length is
        # the same in code points and UTF-16 units because the text is BMP-only.
        b.delta(
            {
                "p": "",
                "o": "patch",
                "v": [
                    {"p": parts, "o": "append", "v": " [stray text, truncated away]"},
                    {"p": parts, "o": "truncate", "v": len(first[0])},
                ],
            }
        )
    b.stream_text(parts, take(5))
    b.delta(
        {
            "p": "/message/metadata/model_switcher_deny",
            "o": "append",
            "v": [{"slug": "o1", "context": "regenerate", "reason": "unsupported_tool_use"}],
        }
    )
    b.delta({"v": {"slug": "gpt-4o", "context": "regenerate", "reason": "unavailable"}})
    b.delta({"p": "/message/metadata/model_switcher_deny", "o": "truncate", "v": 1})
    b.delta({"p": "/message/metadata/token_count", "o": "add", "v": 7})
    b.typed("title_generation", title=_title(turn.prompt) + " (draft)")
    b.stream_text(parts, take(4))
    b.delta({"p": "/message/metadata/token_count", "o": "replace", "v": 12})
    chunk = take(1)
    if chunk:
        b.delta(
            {
                "p": "",
                "o": "patch",
                "v": [
                    {"p": parts, "o": "append", "v": chunk[0]},
                    {"p": "/message/metadata/token_count", "o": "replace", "v": 15},
                ],
            }
        )
        chunk = take(2)
        if chunk:
            b.delta({"v": [{"p": parts, "o": "append", "v": c} for c in chunk]})
    chunk = take(1)
    if chunk:
        b.delta({"o": "patch", "v": [{"p": parts, "o": "append", "v": chunk[0]}]})
    b.delta({"p": "/message/metadata/token_count", "o": "remove"})
    half = len(pieces) // 2
    b.stream_text(parts, take(half))
    b.steps.append(_ping())
    b.stream_text(parts, take(len(pieces)))
    final_ops: list[dict[str, Any]] = []
    if last:
        final_ops.append({"p": parts, "o": "append", "v": last})
    final_ops += [
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        {"p": "/message/end_turn", "o": "replace", "v": True},
        {
            "p": "/message/metadata",
            "o": "append",
            "v": {"finish_details": {"type": "stop", "stop_tokens": [200002]}, "is_complete": True},
        },
    ]
    b.delta({"p": "", "o": "patch", "v": final_ops})


def _tool_reasoning(b: _Builder, parent: str) -> str:
    turn = b.turn
    msg = _msg(
        "tool",
        _text(),
        status="in_progress",
        weight=0.0,
        name=answers.TOOL_REASONER,
        metadata={
            "initial_text": "Reasoning",
            "finished_text": "Reasoned",
            "message_type": "next",
            **turn.served_meta(),
            "parent_id": parent,
        },
    )
    b.document(msg, "v")
    text = answers.expected_reasoning(turn.prompt, turn.model) or ""
    b.stream_text("/message/content/parts/0", answers.split_pieces(text))
    b.delta(
        {
            "p": "",
            "o": "patch",
            "v": [
                {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                {
                    "p": "/message/metadata/finished_text",
                    "o": "replace",
                    "v": "Thought for 2 seconds",
                },
                {"p": "/message/metadata/finished_duration_sec", "o": "add", "v": 2},
            ],
        }
    )
    return str(msg["id"])


def _thoughts(b: _Builder, parent: str) -> str:
    turn = b.turn
    thoughts = answers.expected_thoughts(turn.prompt, turn.model) or []
    msg = _msg(
        "assistant",
        {"content_type": "thoughts", "thoughts": [], "source_analysis_msg_id": _uuid()},
        status="in_progress",
        end_turn=False,
        metadata=b.meta(parent, reasoning_status="is_reasoning", thinking_effort="standard"),
    )
    b.document(msg, "v")
    base = "/message/content/thoughts"
    for n, thought in enumerate(thoughts):
        pieces = answers.split_pieces(thought.content)
        if n == 0:
            # An empty item whose summary and content are then streamed in.
            item = {"summary": "", "content": "", "chunks": [], "finished": False}
            b.delta({"p": base, "o": "append", "v": [item]})
            b.stream_text(f"{base}/{n}/summary", answers.split_pieces(thought.summary))
        else:
            # An item that arrives with its summary and the start of its content.
            item = {"summary": thought.summary, "content": pieces.pop(0), "chunks": []}
            item["finished"] = False
            b.delta({"p": base, "o": "append", "v": [item]})
        b.stream_text(f"{base}/{n}/content", pieces)
        b.delta({"p": f"{base}/{n}/chunks", "o": "append", "v": [thought.content.strip()]})
        b.delta({"p": f"{base}/{n}/finished", "o": "replace", "v": True})
    b.delta(
        {
            "p": "",
            "o": "patch",
            "v": [{"p": "/message/status", "o": "replace", "v": "finished_successfully"}],
        }
    )
    recap = _msg(
        "assistant",
        {"content_type": "reasoning_recap", "content": "Thought for 2s"},
        end_turn=False,
        metadata=b.meta(
            str(msg["id"]),
            reasoning_status="reasoning_ended",
            reasoning_recap_type="collapse",
            finished_duration_sec=2,
        ),
    )
    b.document(recap, "add")
    return str(recap["id"])


def _image_part(image: Image, gen_id: str) -> dict[str, Any]:
    return {
        "content_type": "image_asset_pointer",
        "asset_pointer": image.asset_pointer,
        "size_bytes": image.size_bytes,
        "width": image.width,
        "height": image.height,
        "fovea": None,
        "metadata": {
            "dalle": None,
            "gizmo": None,
            "generation": {
                "gen_id": gen_id,
                "gen_size": "image",
                "seed": None,
                "parent_gen_id": None,
                "height": image.height,
                "width": image.width,
                "transparent_background": False,
                "serialization_title": "Image Generation",
            },
            "container_pixel_height": image.height,
            "container_pixel_width": image.width,
            "sanitized": False,
            "asset_pointer_link": None,
            "watermarked_asset_pointer": None,
        },
    }


def _tool_call(b: _Builder, parent: str) -> str:
    call = _msg(
        "assistant",
        {
            "content_type": "code",
            "language": "unknown",
            "response_format_name": None,
            "text": '{"skipped_mainline":true}',
        },
        status="in_progress",
        end_turn=False,
        metadata={"parent_id": parent, "turn_exchange_id": b.turn_exchange_id},
        recipient=IMAGE_TOOL,
    )
    b.document(call, "add")
    b.delta({"p": "/message/status", "o": "replace", "v": "finished_successfully"})
    return str(call["id"])


def image_message(turn: Turn, parent: str, *, finished: bool) -> dict[str, Any]:
    gen_id = f"gen_{uuid.uuid4().hex[:16]}"
    role = turn.image_role
    return _msg(
        role,
        {"content_type": "multimodal_text", "parts": [_image_part(i, gen_id) for i in turn.images]},
        status="finished_successfully" if finished else "in_progress",
        end_turn=True if finished else None,
        name=IMAGE_TOOL if role == "tool" else None,
        metadata={
            "image_gen_title": "Generated image",
            **turn.served_meta(),
            "parent_id": parent,
            "message_type": "next",
            **(
                {
                    "finish_details": {"type": "stop"},
                    "is_complete": True,
                    "async_task_type": "image_gen",
                }
                if finished
                else {}
            ),
        },
    )


def _image(b: _Builder, parent: str) -> None:
    call_id = _tool_call(b, parent)
    msg = image_message(b.turn, call_id, finished=False)
    first, rest = msg["content"]["parts"][:1], msg["content"]["parts"][1:]
    msg["content"]["parts"] = first
    b.document(msg, "add")
    b.marker(str(msg["id"]))
    b.delta({"p": "/message/content/parts", "o": "append", "v": rest})
    b.delta(
        {
            "p": "",
            "o": "patch",
            "v": [
                {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                {"p": "/message/end_turn", "o": "replace", "v": True},
                {
                    "p": "/message/metadata",
                    "o": "append",
                    "v": {"finish_details": {"type": "stop"}, "is_complete": True},
                },
            ],
        }
    )


def _async_image(b: _Builder, parent: str, late: list[dict[str, Any]]) -> None:
    call_id = _tool_call(b, parent)
    b.typed("conversation_async_status", async_status=7)
    text = (
        "Processing image\n\nLots of people are creating images right now, so this might take a "
        "bit. We'll notify you when your image is ready."
    )
    card = _msg(
        "tool",
        _text(text),
        end_turn=True,
        name=IMAGE_TOOL,
        metadata={
            "ui_card": True,
            "ui_card_title": "Processing image",
            "image_gen_async": False,
            "trigger_async_ux": False,
            "image_gen_task_id": f"chatimagegen-us-prod.fake:{uuid.uuid4()}:US",
            "image_gen_multi_stream": True,
            "parent_id": call_id,
            "turn_exchange_id": b.turn_exchange_id,
        },
    )
    b.marker(str(card["id"]))
    b.document(card, "root")
    late.append(image_message(b.turn, str(card["id"]), finished=True))


def _moderated(b: _Builder, parent: str) -> None:
    msg = _msg("assistant", _text(), status="in_progress", metadata=b.meta(parent))
    b.document(msg, "add")
    b.plain(moderation_event(b.turn.conversation_id, str(msg["id"]), blocked=True, done=True))
    b.delta(
        {
            "p": "",
            "o": "patch",
            "v": [
                {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                {"p": "/message/end_turn", "o": "replace", "v": True},
                {
                    "p": "/message/metadata",
                    "o": "append",
                    "v": {
                        "finish_details": {"type": "stop", "stop_tokens": [200002]},
                        "is_complete": True,
                    },
                },
            ],
        }
    )


def moderation_event(cid: str, message_id: str, *, blocked: bool, done: bool) -> dict[str, Any]:
    return {
        "type": "moderation",
        "conversation_id": cid,
        "message_id": message_id,
        "is_completion": done,
        "moderation_response": {
            "flagged": blocked,
            "blocked": blocked,
            "moderation_id": f"modr-{uuid.uuid4().hex[:29]}",
        },
    }


# ---------------------------------------------------------------- rendering


def _dumps(obj: Any) -> bytes:
    # The site's serializer: Python json.dumps defaults (", ", ": ", ASCII escapes).
    return json.dumps(obj).encode("ascii")


def render_v1(steps: list[Step]) -> list[Chunk]:
    out: list[Chunk] = []
    pad_i = 0
    for step in steps:
        if step.kind == "encoding":
            out.append(Chunk(b'event: delta_encoding\ndata: "v1"\n\n', True))
        elif step.kind in ("delta", "plain"):
            pad = b" " * PADS[pad_i % len(PADS)]
            pad_i += 1
            head = b"event: delta\n" if step.kind == "delta" else b""
            out.append(Chunk(head + b"data: " + _dumps(step.obj) + pad + b"\n\n", True))
        else:
            out.append(_special(step))
    return out


def _special(step: Step) -> Chunk:
    if step.kind == "ping":
        return Chunk(f": ping - {step.obj}\n\n".encode(), False)
    if step.kind == "empty":
        return Chunk(b"data: \n\n", False)
    return Chunk(b"data: [DONE]\n\n", False)


LEGACY_TYPES = ("title_generation", "moderation")


def render_legacy(steps: list[Step], conversation_id: str) -> list[Chunk]:
    """Full-state events: after every delta the whole document, as 2023-2024 streams sent."""
    decoder = DeltaDecoder()
    out: list[Chunk] = []
    user_id: str | None = None
    moderated = False
    last_doc: dict[str, Any] | None = None
    for step in steps:
        if step.kind == "delta":
            doc = decoder.feed(step.obj)
            legacy = {
                "message": doc["message"],
                "conversation_id": conversation_id,
                "error": None,
            }
            out.append(Chunk(b"data: " + _dumps(legacy) + b"\n\n", True))
            last_doc = legacy
            role = doc["message"]["author"]["role"]
            if role == "user" and user_id is None:
                user_id = doc["message"]["id"]
            if not moderated and role == "assistant" and user_id is not None:
                # The prompt's moderation verdict follows the first assistant event.
                moderated = True
                out.append(_legacy_moderation(conversation_id, user_id, done=False))
        elif step.kind == "plain":
            if step.obj.get("type") in LEGACY_TYPES:
                out.append(Chunk(b"data: " + _dumps(step.obj) + b"\n\n", True))
        elif step.kind == "done":
            if last_doc is not None:
                # The capture repeats the finished message once more with `timestamp_`.
                final = json.loads(json.dumps(last_doc))
                final["message"]["metadata"]["timestamp_"] = "absolute"
                out.append(Chunk(b"data: " + _dumps(final) + b"\n\n", True))
                out.append(_legacy_moderation(conversation_id, final["message"]["id"], done=True))
            out.append(_special(step))
        elif step.kind in ("ping", "empty"):
            out.append(_special(step))
    return out


def _legacy_moderation(cid: str, message_id: str, *, done: bool) -> Chunk:
    obj = {
        "conversation_id": cid,
        "message_id": message_id,
        "is_completion": done,
        "moderation_response": {
            "flagged": False,
            "blocked": False,
            "moderation_id": f"modr-{uuid.uuid4().hex[:29]}",
        },
    }
    return Chunk(b"data: " + _dumps(obj) + b"\n\n", True)


_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def split_replay(data: bytes) -> list[Chunk]:
    """Cut a capture into events (one write each); the chunks concatenate to the exact bytes."""
    out: list[Chunk] = []
    pos = 0
    for m in _BOUNDARY.finditer(data):
        out.append(_classify(data[pos : m.end()]))
        pos = m.end()
    if pos < len(data):
        out.append(_classify(data[pos:]))
    return out


def _classify(block: bytes) -> Chunk:
    payload = b""
    for line in block.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            payload += value[1:] if value.startswith(b" ") else value
    stripped = payload.strip()
    return Chunk(block, bool(stripped) and stripped != b"[DONE]")
