"""The Codex backend's model catalog, as the emulator serves it (docs/codex-backend.md, "Models").

One table drives both `GET /backend-api/codex/models` (filtered by the caller's plan and
`client_version`) and the model check of `POST /backend-api/codex/responses`: a slug missing from
the table, or not available to the token's `chatgpt_plan_type`, is refused with the real
"model … is not supported when using Codex with a ChatGPT account" 400.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

FREE = ("free", "free_workspace", "go")
PAID = (
    "plus", "pro", "prolite", "team", "business", "self_serve_business_usage_based",
    "enterprise", "edu", "k12",
)  # fmt: skip
EVERY_PLAN = FREE + PAID

EFFORT_DESCRIPTIONS = {
    "none": "No reasoning: fastest answers",
    "minimal": "Very little reasoning",
    "low": "Fast responses with lighter reasoning",
    "medium": "Balances speed and reasoning depth",
    "high": "Greater reasoning depth for complex problems",
    "xhigh": "Extra high reasoning depth",
    "max": "Maximum reasoning depth",
    "ultra": "Longest reasoning, for the hardest problems",
}

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
CLIENT_VERSION_MAX_LEN = 32


@dataclass(frozen=True, kw_only=True)
class CodexModel:
    slug: str
    display_name: str
    efforts: tuple[str, ...]
    default_effort: str = "medium"
    plans: tuple[str, ...] = EVERY_PLAN
    visibility: str = "list"
    priority: int = 0
    minimal_client_version: str = "0.0.1"
    context_window: int = 272000
    verbosity: bool = True


# Today's slugs (late 2026) with plans and efforts as the public catalogs list them.
MODELS: tuple[CodexModel, ...] = (
    CodexModel(slug="gpt-6-astra", display_name="GPT-6 Astra",
               efforts=("low", "medium", "high", "xhigh", "max"), plans=PAID, priority=1,
               minimal_client_version="0.155.0"),
    CodexModel(slug="gpt-6-sol", display_name="GPT-6 Sol",
               efforts=("low", "medium", "high", "xhigh", "max"), plans=PAID, priority=2,
               minimal_client_version="0.155.0"),
    CodexModel(slug="gpt-6-luna", display_name="GPT-6 Luna",
               efforts=("low", "medium", "high", "xhigh"), priority=3,
               minimal_client_version="0.155.0"),
    CodexModel(slug="gpt-5.6-sol", display_name="GPT-5.6 Sol",
               efforts=("low", "medium", "high", "xhigh", "max", "ultra"), plans=PAID,
               priority=4),
    CodexModel(slug="gpt-5.6-terra", display_name="GPT-5.6 Terra",
               efforts=("low", "medium", "high", "xhigh", "max"), priority=5),
    CodexModel(slug="gpt-5.6-luna", display_name="GPT-5.6 Luna",
               efforts=("low", "medium", "high", "xhigh"), priority=6),
    CodexModel(slug="gpt-5.5", display_name="GPT-5.5",
               efforts=("none", "low", "medium", "high", "xhigh"), priority=7),
    CodexModel(slug="gpt-5.4", display_name="GPT-5.4",
               efforts=("none", "low", "medium", "high", "xhigh"), plans=PAID, priority=8),
    CodexModel(slug="gpt-5.4-mini", display_name="GPT-5.4 mini",
               efforts=("low", "medium", "high"), priority=9),
    CodexModel(slug="gpt-5.3-codex-spark", display_name="GPT-5.3 Codex Spark",
               efforts=("low", "medium", "high", "xhigh"), plans=PAID, priority=10,
               verbosity=False),
    CodexModel(slug="codex-auto-review", display_name="Codex auto review",
               efforts=("low", "medium", "high"), plans=PAID, visibility="hide", priority=99),
)  # fmt: skip
BY_SLUG = {m.slug: m for m in MODELS}


def not_supported_message(slug: str) -> str:
    return f"The '{slug}' model is not supported when using Codex with a ChatGPT account."


def lookup(slug: str, plan_type: str) -> CodexModel | None:
    """The model if this plan may use it; None means the backend refuses the slug."""
    model = BY_SLUG.get(slug)
    if model is None or plan_type not in model.plans:
        return None
    return model


def version_tuple(text: str) -> tuple[int, ...] | None:
    if len(text) > CLIENT_VERSION_MAX_LEN or not _VERSION.match(text):
        return None
    return tuple(int(p) for p in text.split("."))


def _entry(m: CodexModel) -> dict[str, Any]:
    return {
        "slug": m.slug,
        "display_name": m.display_name,
        "description": f"Fake {m.display_name} for the Codex emulator",
        "visibility": m.visibility,
        "priority": m.priority,
        "supported_in_api": True,
        "minimal_client_version": m.minimal_client_version,
        "available_in_plans": list(m.plans),
        "supported_reasoning_levels": [
            {"effort": e, "description": EFFORT_DESCRIPTIONS[e]} for e in m.efforts
        ],
        "default_reasoning_level": m.default_effort,
        "supports_reasoning_summaries": True,
        "default_reasoning_summary": "auto",
        "support_verbosity": m.verbosity,
        "default_verbosity": "medium" if m.verbosity else None,
        "supports_parallel_tool_calls": True,
        "input_modalities": ["text", "image"],
        "context_window": m.context_window,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "service_tiers": [{"id": "priority"}] if m.plans == PAID else [],
        "apply_patch_tool_type": "freeform",
        "shell_type": "shell_command",
        "prefer_websockets": False,
        "use_responses_lite": False,
        "base_instructions": f"You are {m.display_name}, a coding agent.",
    }


def catalog(plan_type: str, client_version: tuple[int, ...]) -> tuple[dict[str, Any], str]:
    """The `{"models": [...]}` body for this plan and client version, and its etag."""
    models = [
        _entry(m)
        for m in MODELS
        if plan_type in m.plans
        and (version_tuple(m.minimal_client_version) or (0,)) <= client_version
    ]
    body = {"models": models}
    etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body, f'W/"{etag}"'
