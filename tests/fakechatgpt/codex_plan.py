"""Fault plans for `POST /backend-api/codex/responses` (`target: "codex"` on `/_fake/next`).

Every key is optional:

    count              how many Codex calls it serves (default 1)
    account            serve only calls whose chatgpt-account-id is this (others skip the plan)
    preset             a ready-made refusal, see PRESETS (its status can be changed with `status`)
    status, body, content_type   answer with this instead (body: str or JSON; default JSON)
    headers            extra response headers {name: value} (also on streams)
    resets_in_seconds  for the usage presets (default 3600)
    plan_type          the plan named in usage bodies (default: the token's chatgpt_plan_type)
    replay             a capture (.sse or .chunks.jsonl) to stream instead of a generated answer
    replay_part        which response of a multi-response capture: an int, or "all" (the whole
                       file in one answer); default: the plan's n-th use plays part n
    framing            "verbatim" (default: the .sse bytes as stored) or "wire" (each event
                       ending with a blank line)
    answer             the text to generate instead of expected_codex_answer()
    tool_calls         [{"name", "arguments" (object or JSON text), "call_id"?, "custom"?}]:
                       generate these calls ("custom": true gives a custom_tool_call whose
                       `arguments` text is its input)
    preamble           a phase "commentary" message before the calls
    summary            the reasoning summary sections (when the request asks for one)
    drop_after_events  close the TCP connection after that many events
    end_after_events   end the body cleanly after that many events (no response.completed)
    no_completed       end the body cleanly just before response.completed
    failed             response.failed instead of response.completed: a code string, or
                       {"code", "message", ...} (more keys go into response.error)
    error_event        an `error` event instead of response.completed: a code or an object
    fail_after_events  send the failed / error event after that many events instead
    incomplete         response.incomplete with this reason instead of response.completed
    delay_ms           pause between events
    stall_ms           pause before the first event, or, with stall_after_events, there

"Events" count SSE blocks written. Status plans answer right after the bearer token check, as an
edge would; stream plans apply only to calls that pass every check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .codex_answers import ToolCall
from .codex_models import not_supported_message
from .faults import CLOUDFLARE_HTML, JSON, Plan, PlanError, _encode_body
from .tokens import MSG_EXPIRED

KEYS = {
    "target", "count", "account", "preset", "status", "body", "content_type", "headers",
    "resets_in_seconds", "plan_type", "replay", "replay_part", "framing", "answer",
    "tool_calls", "preamble", "summary", "drop_after_events", "end_after_events",
    "no_completed", "failed", "error_event", "fail_after_events", "incomplete", "delay_ms",
    "stall_ms", "stall_after_events",
}  # fmt: skip

PRESETS = (
    "usage_limit", "usage_not_included", "expired", "unauthorized", "cloudflare",
    "account_deactivated", "model_not_supported", "instructions_not_valid", "server_error",
    "overloaded",
)  # fmt: skip
DEFAULT_STATUS = {
    "usage_limit": 429, "usage_not_included": 429, "expired": 401, "unauthorized": 401,
    "cloudflare": 403, "account_deactivated": 403, "model_not_supported": 400,
    "instructions_not_valid": 400, "server_error": 500, "overloaded": 503,
}  # fmt: skip


@dataclass(kw_only=True)
class CodexPlan:
    account: str | None = None
    preset: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    resets_in_seconds: int = 3600
    plan_type: str | None = None
    replay: str | None = None
    replay_part: int | str | None = None
    framing: str = "verbatim"
    framing_set: bool = False  # the plan chose a framing (else --codex-replay-framing applies)
    answer: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    preamble: str | None = None
    summary: list[str] | None = None
    drop_after_events: int | None = None
    end_after_events: int | None = None
    no_completed: bool = False
    failed: dict[str, Any] | None = None
    error_event: dict[str, Any] | None = None
    fail_after_events: int | None = None
    incomplete: str | None = None
    uses: int = 0  # calls served so far


def _error_obj(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"code": value, "message": f"Injected {value}"}
    if isinstance(value, dict) and isinstance(value.get("code"), str):
        return {"message": f"Injected {value['code']}", **value}
    raise PlanError(f"{key} must be a code string or an object with a code")


def _tool_call(raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise PlanError("each tool_calls entry needs a name")
    args = raw.get("arguments", {})
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    call_id = raw.get("call_id")
    return ToolCall(
        name=raw["name"],
        arguments=args,
        custom=bool(raw.get("custom", False)),
        call_id=str(call_id) if call_id is not None else None,
    )


def parse(raw: dict[str, Any]) -> Plan:
    unknown = set(raw) - KEYS
    if unknown:
        raise PlanError(f"unknown codex plan keys: {sorted(unknown)}")
    plan = Plan(target="codex", raw=dict(raw), count=int(raw.get("count", 1)))
    cp = CodexPlan()
    plan.codex = cp
    if "preset" in raw:
        if raw["preset"] not in PRESETS:
            raise PlanError(f"unknown codex preset {raw['preset']!r}; known: {list(PRESETS)}")
        cp.preset = raw["preset"]
        plan.status = DEFAULT_STATUS[raw["preset"]]
    if "status" in raw:
        plan.status = int(raw["status"])
        if cp.preset is None:
            plan.body = _encode_body(raw.get("body", {"detail": "Injected error"}))
            plan.content_type = raw.get("content_type", JSON)
    headers = raw.get("headers", {})
    if not isinstance(headers, dict):
        raise PlanError("headers must be an object")
    cp.headers = {str(k): str(v) for k, v in headers.items()}
    for key in ("account", "plan_type", "replay", "answer", "preamble", "incomplete"):
        if raw.get(key) is not None:
            setattr(cp, key, str(raw[key]))
    if cp.replay is not None and not Path(cp.replay).is_file():
        raise PlanError(f"replay file not found: {cp.replay}")
    cp.resets_in_seconds = int(raw.get("resets_in_seconds", 3600))
    part = raw.get("replay_part")
    if part is not None and part != "all" and not isinstance(part, int):
        raise PlanError('replay_part must be an int or "all"')
    cp.replay_part = part
    cp.framing = raw.get("framing", "verbatim")
    cp.framing_set = "framing" in raw
    if cp.framing not in ("verbatim", "wire"):
        raise PlanError('framing must be "verbatim" or "wire"')
    cp.tool_calls = [_tool_call(c) for c in raw.get("tool_calls") or []]
    if raw.get("summary") is not None:
        if not isinstance(raw["summary"], list):
            raise PlanError("summary must be a list of strings")
        cp.summary = [str(s) for s in raw["summary"]]
    for key in ("drop_after_events", "end_after_events", "fail_after_events"):
        if raw.get(key) is not None:
            setattr(cp, key, int(raw[key]))
    for key in ("delay_ms", "stall_ms"):
        if key in raw:
            setattr(plan, key, float(raw[key]))
    if raw.get("stall_after_events") is not None:
        plan.stall_after_events = int(raw["stall_after_events"])
    cp.no_completed = bool(raw.get("no_completed", False))
    if raw.get("failed") is not None:
        cp.failed = _error_obj(raw["failed"], "failed")
    if raw.get("error_event") is not None:
        cp.error_event = _error_obj(raw["error_event"], "error_event")
    return plan


# ---------------------------------------------------------------- preset bodies


def usage_body(kind: str, plan_type: str, resets_in: int, now: float) -> dict[str, Any]:
    if kind == "usage_limit":
        return {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": plan_type,
                "resets_at": int(now) + resets_in,
                "eligible_promo": None,
                "resets_in_seconds": resets_in,
            }
        }
    return {
        "error": {
            "type": "usage_not_included",
            "message": "Codex is not included in your ChatGPT plan.",
            "plan_type": plan_type,
            "resets_at": None,
            "eligible_promo": None,
            "resets_in_seconds": None,
        }
    }


def preset_answer(
    preset: str, *, plan_type: str, resets_in: int, model: str, now: float
) -> tuple[str, bytes]:
    """(content type, body) of a preset refusal."""
    body: Any
    if preset in ("usage_limit", "usage_not_included"):
        body = usage_body(preset, plan_type, resets_in, now)
    elif preset == "expired":
        body = {"detail": MSG_EXPIRED}
    elif preset == "unauthorized":
        body = {"detail": "Unauthorized"}
    elif preset == "cloudflare":
        return "text/html; charset=UTF-8", CLOUDFLARE_HTML.encode()
    elif preset == "account_deactivated":
        body = {
            "error": {
                "message": "This account has been deactivated.",
                "type": "invalid_request_error",
                "param": None,
                "code": "account_deactivated",
            }
        }
    elif preset == "model_not_supported":
        body = {"detail": not_supported_message(model or "gpt-5")}
    elif preset == "instructions_not_valid":
        body = {"detail": "Instructions are not valid"}
    elif preset == "server_error":
        body = {"error": {"code": "server_error", "message": "An error occurred."}}
    else:
        body = {"error": {"code": "server_is_overloaded", "message": "Our servers are busy."}}
    return JSON, _encode_body(body)
