"""Fault plans: what the next conversation (or sentinel) calls should do instead of a clean turn.

A plan is posted to `/_fake/next` as JSON; every key is optional:

    count                how many calls it applies to (default 1)
    target               "conversation" (default: classic and 2026 conversation calls),
                         "sentinel" (chat-requirements, prepare, finalize), or "codex"
                         (/backend-api/codex/responses; its own keys, see codex_plan.py)
    preset               one of PRESETS: a ready-made status, content type and body
    status, body, content_type   answer with this instead (body: str, or JSON value)
    replay               path of a capture to stream verbatim
    answer               the assistant text to generate instead of expected_answer()
    delay_ms             pause between events
    stall_ms             pause before the first event (headers are already sent), or, with
    stall_after_events   ... after that many events
    drop_after_events    close the TCP connection after that many events (no terminating chunk)
    error_event          after `error_after_events` events (default 0), send
                         {"message": null, "conversation_id": ..., "error": <text>} and end the
                         body cleanly without [DONE]
    error_after_events
    malformed_event      true or N: after N events (true = half way) a broken JSON data line
    moderation           a moderation-blocked answer (no text, moderation blocked: true)
    async_image          the async image flow (conversation_async_status, image later in
                         GET conversation/{id}); async_ready_ms (default 300) sets "later"
    async_ready_ms
    image_role           "assistant" (default) or "tool": author of the generated-image message
    answer_model         the model_slug the answer's messages carry (a silent switch)
    model_adjustments    the backend's list of why it switched (e.g. "auto:smaller_model:...")
    resume_fail          resume calls for this conversation answer 404
    tool_mode            how to answer chat2api's tool prompt (toolmodel.MODES; default
                         "follow": obey it)
    handoff_after_events after that many events, a `stream_handoff` event and [DONE]: the rest of
                         the turn is served by `/f/conversation/resume` from offset 0
                         (docs/stream-handoff.md); the resume token's kind is then "topic"
    handoff_replay       with handoff_after_events: the resumed stream repeats the turn from its
                         start instead of going on where the first one stopped

"Events" count chunks written: one SSE block each (pings and the empty `data:` line included).
Status plans (status/preset) answer before any validation, as an edge would; stream plans apply
only to calls that pass every check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import toolmodel

CLOUDFLARE_HTML = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
    '<meta name="robots" content="noindex,nofollow"></head><body>'
    '<div class="main-wrapper" role="main"><div class="main-content">'
    '<noscript><div class="h2"><span id="challenge-error-text">Enable JavaScript and cookies to '
    "continue</span></div></noscript></div></div>"
    "<script>(function(){window._cf_chl_opt={cvId: '3',cZone: \"chatgpt.com\",cType: "
    "'managed',cRay: '8d2f0c1b2a3e4f5a',cH: 'fake',cUPMDTk: \"\\/backend-api\\/conversation"
    "?__cf_chl_tk=fake\",cFPWv: 'g',cITimeS: '1700000000',cTTimeMs: '1000',cMTimeMs: '390000',"
    'cTplC: 0,cTplV: 5,cTplB: \'cf\',cK: "",fa: "\\/backend-api\\/conversation",md: "fake",'
    "cRq: {ru: 'fake',ra: 'fake',rm: 'UE9TVA==',d: 'fake',t: 'MTcwMDAwMDAwMC4wMDAwMDA=',"
    "cT: 1700000000,m: 'fake',i1: 'fake',i2: 'fake',zh: 'fake',uh: 'fake',hh: 'fake'}};"
    "var cpo = document.createElement('script');"
    "cpo.src = '/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray=8d2f0c1b2a3e4f5a';"
    "document.getElementsByTagName('head')[0].appendChild(cpo);}());</script></body></html>"
)

UNUSUAL_ACTIVITY = "Unusual activity has been detected from your device. Try again later."
RATE_LIMIT_MESSAGE = "You've reached our limit of messages per hour. Please try again later."

JSON = "application/json"

# name -> (status, content_type, body)
PRESETS: dict[str, tuple[int, str, Any]] = {
    "cloudflare": (403, "text/html; charset=UTF-8", CLOUDFLARE_HTML),
    "unusual_activity": (403, JSON, {"detail": UNUSUAL_ACTIVITY}),
    "rate_limit": (429, JSON, {"detail": {"message": RATE_LIMIT_MESSAGE, "clears_in": 30}}),
    "server_error": (500, JSON, {"detail": "Internal Server Error"}),
    "bad_gateway": (
        502,
        "text/html",
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare"
        "</center></body></html>",
    ),
    "model_not_found": (
        404,
        JSON,
        {
            "detail": {
                "message": "Model not found or you do not have access to it.",
                "code": "model_not_found",
            }
        },
    ),
    "unauthorized": (
        401,
        JSON,
        {"detail": "Your authentication token has expired. Please try signing in again."},
    ),
}

KEYS = {
    "count", "target", "preset", "status", "body", "content_type", "replay", "answer",
    "delay_ms", "stall_ms", "stall_after_events", "drop_after_events", "error_event",
    "error_after_events", "malformed_event", "moderation", "async_image", "async_ready_ms",
    "image_role", "resume_fail", "answer_model", "model_adjustments", "tool_mode",
    "handoff_after_events", "handoff_replay",
}  # fmt: skip
TARGETS = ("conversation", "sentinel", "codex")


class PlanError(ValueError):
    pass


@dataclass(kw_only=True)
class Plan:
    target: str = "conversation"
    count: int = 1
    status: int | None = None
    body: bytes = b""
    content_type: str = JSON
    replay: str | None = None
    answer: str | None = None
    delay_ms: float = 0
    stall_ms: float = 0
    stall_after_events: int | None = None
    drop_after_events: int | None = None
    error_event: str | None = None
    error_after_events: int = 0
    malformed_event: int | bool | None = None
    moderation: bool = False
    async_image: bool = False
    async_ready_ms: float = 300
    image_role: str = "assistant"
    resume_fail: bool = False
    handoff_after_events: int | None = None
    handoff_replay: bool = False
    answer_model: str | None = None
    model_adjustments: list[str] = field(default_factory=list)
    tool_mode: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    codex: Any = None  # codex_plan.CodexPlan for target "codex"

    @property
    def answers_status(self) -> bool:
        return self.status is not None


def _encode_body(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_plan(raw: Any) -> Plan:
    if not isinstance(raw, dict):
        raise PlanError("plan must be a JSON object")
    if raw.get("target") == "codex":
        from . import codex_plan  # it imports this module

        return codex_plan.parse(raw)
    unknown = set(raw) - KEYS
    if unknown:
        raise PlanError(f"unknown plan keys: {sorted(unknown)}")
    plan = Plan(raw=dict(raw))
    plan.target = raw.get("target", "conversation")
    if plan.target not in TARGETS:
        raise PlanError(f"target must be one of {TARGETS}")
    plan.count = int(raw.get("count", 1))
    if "preset" in raw:
        if raw["preset"] not in PRESETS:
            raise PlanError(f"unknown preset {raw['preset']!r}; known: {sorted(PRESETS)}")
        status, ctype, body = PRESETS[raw["preset"]]
        plan.status, plan.content_type, plan.body = status, ctype, _encode_body(body)
    if "status" in raw:
        plan.status = int(raw["status"])
        plan.body = _encode_body(raw.get("body", {"detail": "Injected error"}))
        plan.content_type = raw.get("content_type", JSON)
    for key in ("delay_ms", "stall_ms", "async_ready_ms"):
        if key in raw:
            setattr(plan, key, float(raw[key]))
    for key in (
        "stall_after_events",
        "drop_after_events",
        "error_after_events",
        "handoff_after_events",
    ):
        if key in raw:
            setattr(plan, key, int(raw[key]))
    for key in ("replay", "answer", "error_event", "answer_model"):
        if key in raw:
            setattr(plan, key, str(raw[key]))
    for key in ("moderation", "async_image", "resume_fail", "handoff_replay"):
        setattr(plan, key, bool(raw.get(key, False)))
    adjustments = raw.get("model_adjustments", [])
    if not isinstance(adjustments, list) or not all(isinstance(a, str) for a in adjustments):
        raise PlanError("model_adjustments must be a list of strings")
    plan.model_adjustments = adjustments
    if "malformed_event" in raw:
        plan.malformed_event = raw["malformed_event"]
    if "tool_mode" in raw:
        if raw["tool_mode"] not in toolmodel.MODES:
            raise PlanError(f"tool_mode must be one of {toolmodel.MODES}")
        plan.tool_mode = raw["tool_mode"]
    plan.image_role = raw.get("image_role", "assistant")
    if plan.image_role not in ("assistant", "tool"):
        raise PlanError("image_role must be assistant or tool")
    return plan


class PlanQueue:
    """Plans per target, consumed in order; each plan serves `count` calls."""

    def __init__(self) -> None:
        self._plans: dict[str, list[Plan]] = {t: [] for t in TARGETS}

    def add(self, plan: Plan) -> None:
        self._plans[plan.target].append(plan)

    def peek(self, target: str) -> Plan | None:
        plans = self._plans[target]
        return plans[0] if plans else None

    def take(self, target: str) -> Plan | None:
        plans = self._plans[target]
        if not plans:
            return None
        plan = plans[0]
        plan.count -= 1
        if plan.count <= 0:
            plans.pop(0)
        return plan

    def peek_first(self, target: str, accepts: Callable[[Plan], bool]) -> Plan | None:
        return next((p for p in self._plans[target] if accepts(p)), None)

    def take_first(self, target: str, accepts: Callable[[Plan], bool]) -> Plan | None:
        """Take from the first plan of `target` that `accepts`; the others stay queued."""
        plans = self._plans[target]
        for i, plan in enumerate(plans):
            if accepts(plan):
                plan.count -= 1
                if plan.count <= 0:
                    plans.pop(i)
                return plan
        return None

    def clear(self) -> None:
        for plans in self._plans.values():
            plans.clear()

    def pending(self) -> dict[str, list[dict[str, Any]]]:
        return {t: [dict(p.raw, count=p.count) for p in ps] for t, ps in self._plans.items()}
