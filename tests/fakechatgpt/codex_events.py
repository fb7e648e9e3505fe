"""Codex backend SSE: a `CodexTurn` rendered as the real stream, and captures cut for replay.

Shapes follow the Codex-backend capture (docs/codex-backend.md, "Stream"): `event:` + `data:`
blocks, the JSON's keys as the backend orders them (`type` first, the rest sorted, so
`sequence_number` usually last), `response.completed` with `output: []`, no `[DONE]`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .answers import split_pieces
from .codex_answers import CodexTurn, ToolCall, split_arguments

ENC_MARK = "fakechatgpt"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def frame(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {_dumps(event)}\n\n".encode()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def encrypted_blob(account_id: str) -> str:
    """An opaque-looking reasoning blob that records which account it was issued to."""
    payload = _dumps({"iss": ENC_MARK, "acct": account_id, "n": secrets.token_hex(16)})
    return "gAAAAAB" + base64.urlsafe_b64encode(payload.encode()).decode()


def blob_account(blob: str) -> str | None:
    """The account an emulator-issued blob belongs to; None for anything else (e.g. captures)."""
    if not blob.startswith("gAAAAAB"):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(blob[7:].encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(payload, dict) and payload.get("iss") == ENC_MARK:
        return str(payload.get("acct"))
    return None


def obfuscation(seq: int) -> str:
    """Padding on delta events: random-looking, of varying length, but repeatable."""
    digest = hashlib.sha256(f"obf{seq}".encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[: 1 + digest[-1] % 14])


@dataclass(kw_only=True)
class Context:
    """What the response object echoes from the request."""

    body: dict[str, Any]
    account_id: str
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0


def response_object(
    ctx: Context,
    status: str,
    *,
    completed_at: int | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = ctx.body
    raw_reasoning, raw_text = body.get("reasoning"), body.get("text")
    reasoning: dict[str, Any] = raw_reasoning if isinstance(raw_reasoning, dict) else {}
    text: dict[str, Any] = raw_text if isinstance(raw_text, dict) else {}
    safety = "user-fake-" + hashlib.sha256(ctx.account_id.encode()).hexdigest()[:12]
    zero_img = {"image_tokens": 0, "text_tokens": 0}
    return {
        "id": ctx.response_id, "object": "response", "created_at": ctx.created_at,
        "status": status, "background": False, "completed_at": completed_at, "error": error,
        "frequency_penalty": 0.0, "incomplete_details": incomplete, "instructions": None,
        "max_output_tokens": None, "max_tool_calls": None, "model": body.get("model"),
        "moderation": None, "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "presence_penalty": 0.0,
        "previous_response_id": None, "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": "24h",
        "reasoning": {
            "context": "current_turn", "effort": reasoning.get("effort"), "mode": "standard",
            "summary": reasoning.get("summary"),
        },
        "safety_identifier": safety,
        "service_tier": body.get("service_tier") or "auto", "store": False, "temperature": 1.0,
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity", "medium"),
        },
        "tool_choice": body.get("tool_choice", "auto"),
        "tool_usage": {
            "image_gen": {
                "input_tokens": 0, "input_tokens_details": zero_img, "output_tokens": 0,
                "output_tokens_details": zero_img, "total_tokens": 0,
            },
            "web_search": {"num_requests": 0},
        },
        "tools": body.get("tools") or [], "top_logprobs": 0, "top_p": 0.98,
        "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }  # fmt: skip


def _tokens(text: str) -> int:
    return (len(text.encode()) + 3) // 4


class _Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, type_: str, **fields: Any) -> dict[str, Any]:
        fields["sequence_number"] = len(self.events)
        event = {"type": type_, **{k: fields[k] for k in sorted(fields)}}
        self.events.append(event)
        return event


@dataclass
class Built:
    """A generated answer: its events (terminal `response.completed` last) and what it made."""

    events: list[dict[str, Any]]
    output: list[dict[str, Any]]  # the finished items, as `output_item.done` carries them
    usage: dict[str, Any]


def _reasoning(ev: _Events, ctx: Context, turn: CodexTurn, index: int) -> dict[str, Any]:
    rid = new_id("rs")
    item: dict[str, Any] = {"id": rid, "type": "reasoning", "content": []}
    if turn.encrypted:
        item["encrypted_content"] = encrypted_blob(ctx.account_id)
    item["summary"] = []
    ev.add("response.output_item.added", item=dict(item), output_index=index)
    for i, section in enumerate(turn.summary):
        empty = {"type": "summary_text", "text": ""}
        common = {"item_id": rid, "output_index": index, "summary_index": i}
        ev.add("response.reasoning_summary_part.added", part=empty, **common)
        for piece in split_pieces(section):
            seq = len(ev.events)
            ev.add(
                "response.reasoning_summary_text.delta",
                delta=piece,
                obfuscation=obfuscation(seq),
                **common,
            )
        ev.add("response.reasoning_summary_text.done", text=section, **common)
        part = {"type": "summary_text", "text": section}
        ev.add("response.reasoning_summary_part.done", part=part, **common)
    done: dict[str, Any] = {"id": rid, "type": "reasoning", "content": []}
    if turn.encrypted:
        done["encrypted_content"] = encrypted_blob(ctx.account_id)
    done["summary"] = [{"type": "summary_text", "text": s} for s in turn.summary]
    ev.add("response.output_item.done", item=done, output_index=index)
    return done


def _message(ev: _Events, text: str, phase: str, index: int) -> dict[str, Any]:
    mid = new_id("msg")
    head = {"id": mid, "type": "message", "status": "in_progress", "content": []}
    ev.add(
        "response.output_item.added",
        item={**head, "phase": phase, "role": "assistant"},
        output_index=index,
    )
    common = {"content_index": 0, "item_id": mid, "output_index": index}
    empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    ev.add("response.content_part.added", part=empty, **common)
    for piece in split_pieces(text):
        seq = len(ev.events)
        ev.add(
            "response.output_text.delta",
            delta=piece,
            logprobs=[],
            obfuscation=obfuscation(seq),
            **common,
        )
    ev.add("response.output_text.done", logprobs=[], text=text, **common)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    ev.add("response.content_part.done", part=part, **common)
    done = {
        "id": mid,
        "type": "message",
        "status": "completed",
        "content": [part],
        "phase": phase,
        "role": "assistant",
    }
    ev.add("response.output_item.done", item=done, output_index=index)
    return done


def _call(ev: _Events, call: ToolCall, index: int) -> dict[str, Any]:
    call_id = call.call_id or new_id("call")[:29]
    if call.custom:
        iid, kind, key, event = new_id("ctc"), "custom_tool_call", "input", "custom_tool_call_input"
    else:
        iid, kind, key, event = (
            new_id("fc"),
            "function_call",
            "arguments",
            "function_call_arguments",
        )
    head = {"id": iid, "type": kind, "status": "in_progress"}
    ev.add(
        "response.output_item.added",
        item={**head, key: "", "call_id": call_id, "name": call.name},
        output_index=index,
    )
    for piece in split_arguments(call.arguments):
        seq = len(ev.events)
        ev.add(
            f"response.{event}.delta",
            delta=piece,
            item_id=iid,
            obfuscation=obfuscation(seq),
            output_index=index,
        )
    ev.add(f"response.{event}.done", item_id=iid, output_index=index, **{key: call.arguments})
    done = {
        "id": iid,
        "type": kind,
        "status": "completed",
        key: call.arguments,
        "call_id": call_id,
        "name": call.name,
    }
    ev.add("response.output_item.done", item=done, output_index=index)
    return done


def build(ctx: Context, turn: CodexTurn, now: int) -> Built:
    """The whole stream for a generated turn, from `response.created` to `response.completed`."""
    ev = _Events()
    ev.add("response.created", response=response_object(ctx, "in_progress"))
    ev.add("response.in_progress", response=response_object(ctx, "in_progress"))
    output: list[dict[str, Any]] = []
    if turn.reasoning:
        output.append(_reasoning(ev, ctx, turn, len(output)))
    if turn.preamble:
        output.append(_message(ev, turn.preamble, "commentary", len(output)))
    for call in turn.calls:
        output.append(_call(ev, call, len(output)))
    if turn.text is not None:
        output.append(_message(ev, turn.text, "final_answer", len(output)))
    reasoning_tokens = (16 + sum(_tokens(s) for s in turn.summary)) if turn.reasoning else 0
    visible = sum(
        _tokens(_dumps(item.get("content") or item.get("arguments") or item.get("input") or ""))
        for item in output
        if item["type"] != "reasoning"
    )
    usage = {
        "input_tokens": ctx.input_tokens,
        "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": ctx.cached_tokens},
        "output_tokens": reasoning_tokens + visible,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": ctx.input_tokens + reasoning_tokens + visible,
    }
    completed = response_object(ctx, "completed", completed_at=now, usage=usage)
    ev.add("response.completed", response=completed)
    return Built(ev.events, output, usage)


def failed_event(ctx: Context, seq: int, error: dict[str, Any]) -> dict[str, Any]:
    resp = response_object(ctx, "failed", error=error)
    return {"type": "response.failed", "response": resp, "sequence_number": seq}


def incomplete_event(ctx: Context, seq: int, reason: str, now: int) -> dict[str, Any]:
    resp = response_object(ctx, "incomplete", completed_at=now, incomplete={"reason": reason})
    return {"type": "response.incomplete", "response": resp, "sequence_number": seq}


def error_event(seq: int, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "error",
        "code": error.get("code"),
        "message": error.get("message"),
        "param": error.get("param"),
        "sequence_number": seq,
    }


# ---------------------------------------------------------------- replay


def type_of(block: bytes) -> str | None:
    for line in block.splitlines():
        if line.startswith(b"data:"):
            try:
                obj = json.loads(line[5:])
            except ValueError:
                return None
            return obj.get("type") if isinstance(obj, dict) else None
    return None


def _sse_blocks(data: bytes) -> list[bytes]:
    """Cut an .sse capture into event blocks whose concatenation is the file, byte for byte.

    A block ends at a blank line, or where a new `event:` line follows a `data:` line (capture
    01 is stored without blank lines between events).
    """
    blocks: list[bytes] = []
    current: list[bytes] = []
    has_data = False
    for line in data.splitlines(keepends=True):
        if line.startswith(b"event:") and has_data:
            blocks.append(b"".join(current))
            current, has_data = [], False
        current.append(line)
        has_data = has_data or line.startswith(b"data:")
        if line in (b"\n", b"\r\n"):
            blocks.append(b"".join(current))
            current, has_data = [], False
    if current:
        blocks.append(b"".join(current))
    return blocks


def _wire(block: bytes) -> bytes:
    """The block as it goes on the wire: ending with one blank line."""
    stripped = block.rstrip(b"\r\n")
    return stripped + b"\n\n" if stripped else b""


@functools.lru_cache(maxsize=32)
def load_replay(path: str, framing: str = "verbatim") -> list[list[bytes]]:
    """A capture as responses (each a list of event chunks, one socket write each).

    `.sse`: the file's bytes cut at event boundaries (framing "verbatim"), or each event ending
    with a blank line ("wire"). `.jsonl`: one JSON event per line, framed as `event:` + `data:`.
    A new response starts at every `response.created` after the first. Cached: callers must not
    change the lists.
    """
    data = Path(path).read_bytes()
    if path.endswith(".jsonl"):
        blocks = []
        for line in data.splitlines():
            if line.strip():
                kind = json.loads(line).get("type", "message")
                blocks.append(b"event: " + kind.encode() + b"\ndata: " + line.strip() + b"\n\n")
    else:
        blocks = _sse_blocks(data)
        if framing == "wire":
            blocks = [b for b in map(_wire, blocks) if b]
    parts: list[list[bytes]] = []
    for block in blocks:
        if not parts or (type_of(block) == "response.created" and _has_created(parts[-1])):
            parts.append([])
        parts[-1].append(block)
    return parts


def _has_created(blocks: list[bytes]) -> bool:
    return any(type_of(b) == "response.created" for b in blocks)
