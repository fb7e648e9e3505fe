"""FastAPI-style 422 bodies for malformed conversation requests.

The shapes follow the real ones in fixtures/chatgpt/other/webchatgpt_conversation_422_*.json
(pydantic v1 wording: `field required` / `value_error.missing`, `value_error.jsondecode`).
"""

from __future__ import annotations

import json
from typing import Any

Loc = list[str | int]


class Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        return {"detail": self.errors}


def missing(loc: Loc) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": "field required", "type": "value_error.missing"}


def wrong_type(loc: Loc, kind: str) -> dict[str, Any]:
    msg = {
        "str": "str type expected",
        "list": "value is not a valid list",
        "dict": "value is not a valid dict",
        "bool": "value could not be parsed to a boolean",
        "int": "value is not a valid integer",
    }[kind]
    return {"loc": ["body", *loc], "msg": msg, "type": f"type_error.{kind}"}


def not_permitted(loc: Loc, permitted: tuple[str, ...]) -> dict[str, Any]:
    allowed = ", ".join(repr(p) for p in permitted)
    return {
        "loc": ["body", *loc],
        "msg": f"unexpected value; permitted: {allowed}",
        "type": "value_error.const",
        "ctx": {"given": None, "permitted": list(permitted)},
    }


def parse_json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        text = raw.decode("utf-8", errors="replace")
        if isinstance(exc, json.JSONDecodeError):
            msg, pos, lineno, colno = exc.msg, exc.pos, exc.lineno, exc.colno
        else:
            msg, pos, lineno, colno = "Invalid UTF-8", 0, 1, 1
        raise Invalid(
            [
                {
                    "loc": ["body", pos],
                    "msg": f"{msg}: line {lineno} column {colno} (char {pos})",
                    "type": "value_error.jsondecode",
                    "ctx": {
                        "msg": msg,
                        "doc": text[:2000],
                        "pos": pos,
                        "lineno": lineno,
                        "colno": colno,
                    },
                }
            ]
        ) from exc


def _check(errors: list[dict[str, Any]], body: dict[str, Any], key: str, kind: type, name: str,
           *, required: bool) -> None:  # fmt: skip
    if key not in body or body[key] is None:
        if required:
            errors.append(missing([key]))
        return
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        errors.append(wrong_type([key], name))


def check_conversation_body(body: Any, *, with_messages: bool) -> dict[str, Any]:
    """Validate a conversation (or f/conversation/prepare) body; raise Invalid with 422 errors."""
    if not isinstance(body, dict):
        raise Invalid(
            [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
        )
    errors: list[dict[str, Any]] = []
    if "action" not in body:
        errors.append(missing(["action"]))
    elif body["action"] != "next":
        errors.append(not_permitted(["action"], ("next",)))
    _check(errors, body, "model", str, "str", required=True)
    _check(errors, body, "parent_message_id", str, "str", required=with_messages)
    _check(errors, body, "conversation_id", str, "str", required=False)
    _check(errors, body, "supported_encodings", list, "list", required=False)
    _check(errors, body, "system_hints", list, "list", required=False)
    _check(errors, body, "history_and_training_disabled", bool, "bool", required=False)
    _check(errors, body, "timezone_offset_min", int, "int", required=False)
    mode = body.get("conversation_mode")
    if mode is not None:
        if not isinstance(mode, dict):
            errors.append(wrong_type(["conversation_mode"], "dict"))
        elif mode.get("kind") not in ("primary_assistant", "gizmo_interaction"):
            errors.append(
                not_permitted(
                    ["conversation_mode", "kind"], ("primary_assistant", "gizmo_interaction")
                )
            )
        elif mode["kind"] == "gizmo_interaction":
            gid = mode.get("gizmo_id")
            if not isinstance(gid, str) or not gid.startswith("g-"):
                errors.append(
                    {
                        "loc": ["body", "conversation_mode", "gizmo_id"],
                        "msg": "gizmo_id must be a g-... id",
                        "type": "value_error",
                    }
                )
    if with_messages:
        messages = body.get("messages")
        if messages is None:
            errors.append(missing(["messages"]))
        elif not isinstance(messages, list):
            errors.append(wrong_type(["messages"], "list"))
        else:
            for i, message in enumerate(messages):
                errors.extend(_check_message(i, message))
    if errors:
        raise Invalid(errors)
    return body


def _check_message(i: int, message: Any) -> list[dict[str, Any]]:
    loc: Loc = ["messages", i]
    if not isinstance(message, dict):
        return [wrong_type(loc, "dict")]
    errors: list[dict[str, Any]] = []
    author = message.get("author")
    if not isinstance(author, dict):
        errors.append(
            missing([*loc, "author"]) if author is None else wrong_type([*loc, "author"], "dict")
        )
    elif not isinstance(author.get("role"), str):
        errors.append(missing([*loc, "author", "role"]))
    content = message.get("content")
    if not isinstance(content, dict):
        errors.append(
            missing([*loc, "content"]) if content is None else wrong_type([*loc, "content"], "dict")
        )
    else:
        if not isinstance(content.get("content_type"), str):
            errors.append(missing([*loc, "content", "content_type"]))
        if content.get("content_type") in ("text", "multimodal_text"):
            if not isinstance(content.get("parts"), list):
                errors.append(wrong_type([*loc, "content", "parts"], "list"))
    return errors
