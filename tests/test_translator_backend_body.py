"""The ChatGPT conversation and prepare bodies built from a parsed request (backend_body.py)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.support.chat_bodies import TABLE, USER, body, msg, parse
from translator.backend_body import (
    Attachment,
    build_conversation_body,
    build_prepare_body,
    thinking_effort_for,
    timezone_offset_for,
)
from translator.models import ResolvedModel, resolve_model
from translator.request import ChatRequest


def resolved(name: str) -> ResolvedModel:
    return resolve_model(TABLE, name)


def build(req: ChatRequest, name: str = "gpt-4o", **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "model": resolved(name),
        "history_disabled": True,
        "timezone": "America/New_York",
        "timezone_offset_min": 300,
        "rng": random.Random(7),
    }
    options.update(kwargs)
    return build_conversation_body(req, **options)


def texts(built: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (m["author"]["role"], m["content"]["parts"][0])
        for m in built["messages"]
        if m["content"]["content_type"] == "text"
    ]


def test_classic_body_shape() -> None:
    built = build(parse(body()))
    assert built["action"] == "next"
    assert built["model"] == "gpt-4o"
    assert built["parent_message_id"] == "client-created-root"
    assert "conversation_id" not in built
    assert built["conversation_mode"] == {"kind": "primary_assistant"}
    assert built["supported_encodings"] == ["v1"]
    assert built["system_hints"] == []
    assert built["force_use_sse"] is True
    assert built["history_and_training_disabled"] is True
    assert built["paragen_cot_summary_display_override"] == "allow"
    assert (built["timezone"], built["timezone_offset_min"]) == ("America/New_York", 300)
    info = built["client_contextual_info"]
    assert (
        info["page_width"] <= info["screen_width"] and info["page_height"] < info["screen_height"]
    )
    for key in ("client_prepare_state", "supports_buffering", "force_parallel_switch"):
        assert key not in built
    (message,) = built["messages"]
    assert message["author"] == {"role": "user"}
    assert message["content"] == {"content_type": "text", "parts": ["hi"]}
    assert message["metadata"] == {}
    assert uuid.UUID(message["id"]).version == 4
    json.dumps(built)


def test_deterministic_with_seeded_rng_and_unique_ids() -> None:
    req = parse(body(messages=[USER, USER, USER]))
    assert build(req) == build(req)
    ids = [m["id"] for m in build(req)["messages"]]
    assert len(set(ids)) == 3


def test_browser_profile_contextual_info() -> None:
    info = {"is_dark_mode": True, "screen_width": 1280}
    assert build(parse(body()), client_contextual_info=info)["client_contextual_info"] == info


@pytest.mark.parametrize(
    ("role", "mapped"),
    [
        ("system", "system"),
        ("developer", "system"),
        ("user", "user"),
        ("assistant", "assistant"),
    ],
)
def test_role_mapping(role: str, mapped: str) -> None:
    built = build(parse(msg(role=role, content="x")))
    assert texts(built) == [(mapped, "x")]


def test_tool_messages_are_labelled_text() -> None:
    req = parse(
        body(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
                {"role": "function", "name": "legacy", "content": "ok"},
            ]
        )
    )
    assert texts(build(req)) == [
        ("user", "hi"),
        ("assistant", '[Tool call (id call_1): weather({"city":"Oslo"})]'),
        ("user", "[Tool result (function weather, tool_call_id call_1)]\n-3C"),
        ("user", "[Function result (legacy)]\nok"),
    ]


def test_multipart_text_joined() -> None:
    req = parse(
        msg(role="user", content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    )
    assert texts(build(req)) == [("user", "a\nb")]


@pytest.mark.parametrize(
    ("setting", "override", "expected"),
    [
        (True, None, True),
        (False, None, False),
        (True, False, False),
        (False, True, True),
    ],
)
def test_history_flag_override(setting: bool, override: bool | None, expected: bool) -> None:
    req = parse(body(history_disabled=override))
    assert build(req, history_disabled=setting)["history_and_training_disabled"] is expected


def test_conversation_continuation() -> None:
    req = parse(body(conversation_id="conv-1", parent_message_id="msg-9"))
    built = build(req)
    assert (built["conversation_id"], built["parent_message_id"]) == ("conv-1", "msg-9")


def test_gizmo() -> None:
    built = build(parse(body(model="gpt-4-gizmo-g-abc123")), "gpt-4-gizmo-g-abc123")
    assert built["conversation_mode"] == {"kind": "gizmo_interaction", "gizmo_id": "g-abc123"}
    assert built["model"] == "auto"


def test_picture_v2() -> None:
    built = build(parse(body(messages=[USER, USER])), "gpt-4o-image")
    assert built["system_hints"] == ["picture_v2"]
    assert built["model"] == "gpt-4o"
    assert built["messages"][-1]["metadata"]["system_hints"] == ["picture_v2"]
    assert "system_hints" not in built["messages"][0]["metadata"]


def test_2026_fields() -> None:
    built = build(parse(body()), dialect="2026")
    assert built["client_prepare_state"] == "success"
    assert built["supports_buffering"] is True
    assert built["force_parallel_switch"] == "auto"
    assert built["client_contextual_info"]["app_name"] == "chatgpt.com"
    assert "force_paragen" not in built
    assert "thinking_effort" not in built  # gpt-4o is not a thinking model
    assert (
        build(parse(body()), dialect="2026", prepare_state="failure")["client_prepare_state"]
        == "failure"
    )


@pytest.mark.parametrize(
    ("effort", "expected"),
    [
        ("none", "standard"),
        ("minimal", "standard"),
        ("low", "standard"),
        ("medium", "extended"),
        ("high", "max"),
        ("xhigh", "max"),
        (None, None),
    ],
)
def test_thinking_effort(effort: str | None, expected: str | None) -> None:
    req = parse(body(model="gpt-5.5-thinking", reasoning_effort=effort))
    built = build(req, "gpt-5.5-thinking", dialect="2026")
    assert built.get("thinking_effort") == expected
    assert built["model"] == "gpt-5-5-thinking"
    assert "thinking_effort" not in build(req, "gpt-5.5-thinking")  # classic: never
    assert thinking_effort_for(resolved("gpt-4o"), effort) is None


IMAGE = Attachment(
    file_id="file-img",
    size=1000,
    name="a.png",
    mime_type="image/png",
    width=640,
    height=480,
    is_image=True,
)
NEW_IMAGE = Attachment(
    file_id="file_0000abc",
    size=2000,
    name="b.png",
    mime_type="image/png",
    width=10,
    height=20,
    is_image=True,
)
DOC = Attachment(file_id="file-doc", size=3000, name="a.pdf", mime_type="application/pdf")

MEDIA_MESSAGE = {
    "role": "user",
    "content": [
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
        {"type": "text", "text": "what is this?"},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"},
        },
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
    ],
}


def test_attachments_become_asset_pointers() -> None:
    req = parse(body(messages=[MEDIA_MESSAGE]))
    attachments = {(0, 0): IMAGE, (0, 2): DOC, (0, 3): NEW_IMAGE}
    (message,) = build(req, attachments_by_part=attachments)["messages"]
    assert message["content"] == {
        "content_type": "multimodal_text",
        "parts": [
            {
                "content_type": "image_asset_pointer",
                "asset_pointer": "file-service://file-img",
                "size_bytes": 1000,
                "width": 640,
                "height": 480,
            },
            "what is this?",
            {
                "content_type": "image_asset_pointer",
                "asset_pointer": "sediment://file_0000abc",
                "size_bytes": 2000,
                "width": 10,
                "height": 20,
            },
        ],
    }
    assert message["metadata"]["attachments"] == [
        {
            "id": "file-img",
            "size": 1000,
            "name": "a.png",
            "mime_type": "image/png",
            "width": 640,
            "height": 480,
        },
        {"id": "file-doc", "size": 3000, "name": "a.pdf", "mime_type": "application/pdf"},
        {
            "id": "file_0000abc",
            "size": 2000,
            "name": "b.png",
            "mime_type": "image/png",
            "width": 10,
            "height": 20,
        },
    ]


def test_2026_attachment_fields() -> None:
    req = parse(body(messages=[MEDIA_MESSAGE]))
    built = build(req, attachments_by_part={(0, 0): IMAGE}, dialect="2026")
    (entry,) = built["messages"][0]["metadata"]["attachments"]
    assert (entry["source"], entry["is_big_paste"]) == ("local", False)


def test_document_only_stays_text_with_attachment() -> None:
    req = parse(
        msg(
            role="user",
            content=[
                {"type": "text", "text": "summarise"},
                {"type": "file", "file": {"file_data": "data:a;base64,AA", "filename": "a.pdf"}},
            ],
        )
    )
    (message,) = build(req, attachments_by_part={(0, 1): DOC})["messages"]
    assert message["content"] == {"content_type": "text", "parts": ["summarise"]}
    assert message["metadata"]["attachments"][0]["id"] == "file-doc"


def test_missing_uploads_become_notes() -> None:
    req = parse(body(messages=[MEDIA_MESSAGE]))
    (message,) = build(req)["messages"]
    assert message["content"] == {
        "content_type": "text",
        "parts": [
            "[image not attached: https://x/a.png]\nwhat is this?\n"
            "[file not attached: a.pdf]\n[image not attached: inline data]"
        ],
    }
    assert message["metadata"] == {}


def test_prepare_body() -> None:
    req = parse(
        body(
            model="gpt-5.5-thinking",
            reasoning_effort="medium",
            conversation_id="conv-1",
            messages=[{"role": "user", "content": "Hello there"}],
        )
    )
    options: dict[str, Any] = {
        "model": resolved("gpt-5.5-thinking"),
        "timezone": "Europe/Warsaw",
        "timezone_offset_min": -60,
        "rng": random.Random(1),
    }
    first = build_prepare_body(req, **options)
    assert "messages" not in first and "partial_query" not in first
    assert first["client_prepare_state"] == "none"
    assert first["action"] == "next" and first["model"] == "gpt-5-5-thinking"
    assert first["conversation_id"] == "conv-1"
    assert first["thinking_effort"] == "extended"
    assert first["supports_buffering"] is True and first["supported_encodings"] == ["v1"]
    assert first["conversation_mode"] == {"kind": "primary_assistant"}
    sent = build_prepare_body(req, prepare_state="sent", **options)
    assert sent["partial_query"]["content"] == {"content_type": "text", "parts": ["Hello"]}
    assert sent["partial_query"]["author"] == {"role": "user"}


@pytest.mark.parametrize(
    ("tz", "when", "offset"),
    [
        ("America/New_York", datetime(2025, 1, 15, tzinfo=timezone.utc), 300),
        ("America/New_York", datetime(2025, 7, 15, tzinfo=timezone.utc), 240),
        ("America/Los_Angeles", datetime(2025, 1, 15, tzinfo=timezone.utc), 480),
        ("Europe/Warsaw", datetime(2025, 1, 15, tzinfo=timezone.utc), -60),
        ("Asia/Kolkata", datetime(2025, 1, 15, tzinfo=timezone.utc), -330),
        ("UTC", datetime(2025, 1, 15, tzinfo=timezone.utc), 0),
    ],
)
def test_timezone_offset_for(tz: str, when: datetime, offset: int) -> None:
    assert timezone_offset_for(tz, when) == offset


@pytest.mark.parametrize(("tz", "offset"), [("", 0), ("UTC", 1000), ("UTC", True)])
def test_bad_timezone_arguments(tz: str, offset: Any) -> None:
    with pytest.raises(ValueError):
        build(parse(body()), timezone=tz, timezone_offset_min=offset)
