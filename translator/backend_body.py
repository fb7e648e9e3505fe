"""ChatGPT conversation bodies built from a parsed request.  Pure: no I/O.

:func:`build_conversation_body` and :func:`build_prepare_body` turn a
:class:`~translator.request.values.ChatRequest` (whichever OpenAI API it was parsed from) into the
backend's JSON (chatgpt-backend.md §4, chatgpt-backend-2026.md §2.4-2.5).  Uploads are done by the
I/O layer before: it hands in one :class:`AttachmentLike` per image, file or audio part.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from translator.models import ResolvedModel
from translator.request.values import ChatRequest, FilePart, ImagePart, Message, Part, TextPart

#: Backend placeholder parent for a new conversation (reference §7.2).
ROOT_PARENT = "client-created-root"

#: ``reasoning_effort`` → 2026 ``thinking_effort`` (chatgpt-backend-2026.md §1.7, aurora's map;
#: only the three values every Thinking lane accepts).
THINKING_EFFORT: Mapping[str, str] = {
    "none": "standard",
    "minimal": "standard",
    "low": "standard",
    "medium": "extended",
    "high": "max",
    "xhigh": "max",
}


# --- uploads hook ---------------------------------------------------------------------------


class AttachmentLike(Protocol):
    """An uploaded part, as the I/O layer reports it (chatgpt-backend.md §7)."""

    @property
    def file_id(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def is_image(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Attachment:
    file_id: str
    size: int
    name: str
    mime_type: str
    width: int | None = None
    height: int | None = None
    is_image: bool = False


#: (message index, part index) → the upload of that part.
Attachments = Mapping[tuple[int, int], AttachmentLike]


def timezone_offset_for(timezone: str, when: datetime) -> int:
    """JavaScript's ``getTimezoneOffset()`` for ``timezone`` at ``when`` (aware datetime).

    Positive west of UTC: America/New_York is 300 in winter and 240 in summer (the original sent
    Los Angeles with -480, the offset of UTC+8, reference §7.2).
    """
    offset = when.astimezone(ZoneInfo(timezone)).utcoffset()
    assert offset is not None
    return -int(offset.total_seconds() // 60)


def thinking_effort_for(model: ResolvedModel, reasoning_effort: str | None) -> str | None:
    """The 2026 ``thinking_effort`` for a thinking model, or None to let the server choose."""
    if not model.thinking or reasoning_effort is None:
        return None
    return THINKING_EFFORT.get(reasoning_effort)


def contextual_info(rng: random.Random) -> dict[str, Any]:
    """Plausible ``client_contextual_info``: a common screen with a browser window inside it."""
    screen_width, screen_height, pixel_ratio = rng.choice(
        [(1920, 1080, 1), (2560, 1440, 1), (1536, 864, 1.25), (1440, 900, 2), (1280, 800, 2)]
    )
    return {
        "is_dark_mode": rng.random() < 0.4,
        "time_since_loaded": rng.randint(2_000, 120_000),
        "page_height": rng.randint(screen_height * 3 // 5, screen_height - 120),
        "page_width": rng.randint(screen_width * 3 // 5, screen_width),
        "pixel_ratio": pixel_ratio,
        "screen_height": screen_height,
        "screen_width": screen_width,
        "app_name": "chatgpt.com",
    }


def build_conversation_body(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    history_disabled: bool,
    attachments_by_part: Attachments | None = None,
    timezone: str,
    timezone_offset_min: int,
    rng: random.Random,
    dialect: Literal["classic", "2026"] = "classic",
    client_contextual_info: Mapping[str, Any] | None = None,
    prepare_state: Literal["success", "failure", "none"] = "success",
) -> dict[str, Any]:
    """The JSON body of ``POST {base}/conversation`` (classic) or ``{base}/f/conversation``.

    ``history_disabled`` is the setting; the request's own ``history_disabled`` overrides it.
    ``attachments_by_part`` maps (message index, part index) to the upload of an image, file or
    audio part; a part without one is replaced by a short text note so that the model knows
    something was left out.  ``client_contextual_info`` comes from the browser profile when
    there is one, else it is made up from ``rng``.  The whole client history goes out in one
    ``action: "next"`` (reference §7.3), also when ``conversation_id`` continues a conversation.
    """
    _check_timezone(timezone, timezone_offset_min)
    messages = _map_messages(req.messages, attachments_by_part or {}, rng, dialect)
    if model.image and messages:
        messages[-1]["metadata"]["system_hints"] = ["picture_v2"]
    body = _common_fields(
        req,
        model=model,
        timezone=timezone,
        offset=timezone_offset_min,
        rng=rng,
        info=client_contextual_info,
    )
    body["messages"] = messages
    body["enable_message_followups"] = False
    body["force_use_sse"] = True
    body["history_and_training_disabled"] = (
        req.history_disabled if req.history_disabled is not None else history_disabled
    )
    if dialect == "2026":
        body["client_prepare_state"] = prepare_state
        body["supports_buffering"] = True
        body["force_parallel_switch"] = "auto"
        effort = thinking_effort_for(model, req.reasoning_effort)
        if effort is not None:
            body["thinking_effort"] = effort
    else:
        # Flags the original's body always carried (reference §7.2).
        body["force_paragen"] = False
        body["force_paragen_model_slug"] = ""
        body["force_rate_limit"] = False
    return body


def build_prepare_body(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    timezone: str,
    timezone_offset_min: int,
    rng: random.Random,
    client_contextual_info: Mapping[str, Any] | None = None,
    prepare_state: Literal["none", "sent", "success"] = "none",
) -> dict[str, Any]:
    """The body of the 2026 ``POST {base}/f/conversation/prepare`` (chatgpt-backend-2026.md §2.4):
    the conversation body's shape without ``messages``.  With state ``sent`` or ``success`` it
    carries a ``partial_query`` of the last user text's first five characters, as aurora does.
    """
    _check_timezone(timezone, timezone_offset_min)
    body = _common_fields(
        req,
        model=model,
        timezone=timezone,
        offset=timezone_offset_min,
        rng=rng,
        info=client_contextual_info,
    )
    body["supports_buffering"] = True
    body["client_prepare_state"] = prepare_state
    effort = thinking_effort_for(model, req.reasoning_effort)
    if effort is not None:
        body["thinking_effort"] = effort
    if prepare_state != "none":
        last_user = next((m for m in reversed(req.messages) if m.role == "user"), None)
        if last_user is not None:
            body["partial_query"] = {
                "id": _uuid(rng),
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": [last_user.text[:5]]},
            }
    return body


def _check_timezone(timezone: str, offset: int) -> None:
    # Programming or settings errors, not client errors: real offsets span UTC-12 to UTC+14.
    if not timezone:
        raise ValueError("timezone must be an IANA name such as 'America/New_York'")
    if isinstance(offset, bool) or not isinstance(offset, int) or not -840 <= offset <= 720:
        raise ValueError(f"timezone_offset_min must be minutes in -840..720, got {offset!r}")


def _common_fields(
    req: ChatRequest,
    *,
    model: ResolvedModel,
    timezone: str,
    offset: int,
    rng: random.Random,
    info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": "next",
        "parent_message_id": req.parent_message_id or ROOT_PARENT,
        "model": model.slug,
    }
    if req.conversation_id:
        body["conversation_id"] = req.conversation_id
    body["timezone_offset_min"] = offset
    body["timezone"] = timezone
    body["conversation_mode"] = (
        {"kind": "gizmo_interaction", "gizmo_id": model.gizmo_id}
        if model.gizmo_id
        else {"kind": "primary_assistant"}
    )
    body["system_hints"] = ["picture_v2"] if model.image else []
    body["supported_encodings"] = ["v1"]
    body["client_contextual_info"] = dict(info) if info is not None else contextual_info(rng)
    body["paragen_cot_summary_display_override"] = "allow"
    return body


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _map_messages(
    messages: Sequence[Message],
    attachments: Attachments,
    rng: random.Random,
    dialect: str,
) -> list[dict[str, Any]]:
    tool_names = {c.id: c.name for m in messages for c in m.tool_calls if c.id is not None}
    return [
        _map_message(i, m, attachments, rng, dialect, tool_names) for i, m in enumerate(messages)
    ]


def _map_message(
    i: int,
    message: Message,
    attachments: Attachments,
    rng: random.Random,
    dialect: str,
    tool_names: Mapping[str, str],
) -> dict[str, Any]:
    # ChatGPT has no developer role on the web; developer instructions are system instructions.
    # Tool and function results have no web equivalent either: they go in as labelled user text.
    role = {"developer": "system", "tool": "user", "function": "user"}.get(
        message.role, message.role
    )
    segments: list[str | dict[str, Any]] = []
    metadata_attachments: list[dict[str, Any]] = []
    if message.role == "tool":
        name = tool_names.get(message.tool_call_id or "")
        label = f"function {name}, " if name else ""
        segments.append(f"[Tool result ({label}tool_call_id {message.tool_call_id})]")
    elif message.role == "function":
        segments.append(f"[Function result ({message.name})]")

    for j, part in enumerate(message.content):
        if isinstance(part, TextPart):
            segments.append(part.text)
            continue
        attachment = attachments.get((i, j))
        if attachment is None:
            segments.append(_missing_note(part))
            continue
        entry: dict[str, Any] = {
            "id": attachment.file_id,
            "size": attachment.size,
            "name": attachment.name,
            "mime_type": attachment.mime_type,
        }
        if attachment.is_image:
            entry["width"] = attachment.width
            entry["height"] = attachment.height
            segments.append(
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": _asset_pointer(attachment.file_id),
                    "size_bytes": attachment.size,
                    "width": attachment.width,
                    "height": attachment.height,
                }
            )
        if dialect == "2026":
            entry["source"] = "local"
            entry["is_big_paste"] = False
        metadata_attachments.append(entry)

    for call in message.tool_calls:
        ident = f" (id {call.id})" if call.id else ""
        segments.append(f"[Tool call{ident}: {call.name}({call.arguments})]")

    parts = _merge_text(segments)
    metadata: dict[str, Any] = {}
    if metadata_attachments:
        metadata["attachments"] = metadata_attachments
    if any(isinstance(p, dict) for p in parts):
        content: dict[str, Any] = {"content_type": "multimodal_text", "parts": parts}
    else:
        content = {"content_type": "text", "parts": ["\n".join(str(p) for p in parts)]}
    return {
        "id": _uuid(rng),
        "author": {"role": role},
        "content": content,
        "metadata": metadata,
    }


def _merge_text(segments: Sequence[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
    """Adjacent text segments joined by newlines; asset pointers kept in place."""
    merged: list[str | dict[str, Any]] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] = f"{merged[-1]}\n{segment}"
        else:
            merged.append(segment)
    return merged or [""]


def _asset_pointer(file_id: str) -> str:
    # New-style ids (file_00000000…) live in "sediment", old ones (file-…) in the file service
    # (fixture other/heygen_f_conversation_request_body_imagegen_2026-04.json, reference §7.3).
    scheme = "sediment" if file_id.startswith("file_") else "file-service"
    return f"{scheme}://{file_id}"


def _missing_note(part: Part) -> str:
    if isinstance(part, ImagePart):
        where = "inline data" if part.url.startswith("data:") else part.url[:200]
        return f"[image not attached: {where}]"
    if isinstance(part, FilePart):
        return f"[file not attached: {part.filename or part.file_id or 'inline data'}]"
    return "[audio not attached]"
