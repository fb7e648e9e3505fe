"""The Codex backend's model table (``CODEX_MODELS`` / ``codex_models`` in config.yaml).

Same format and resolution as the web table (:mod:`translator.models`). The
slugs are those the Codex backend listed for ChatGPT accounts in late 2026
(``docs/codex-backend.md``, "Models"); which of them an account may use depends
on its plan.
"""

from __future__ import annotations

from typing import Any

from translator.models import DEFAULT_CREATED

CODEX_SLUGS = (
    "gpt-5.5",
    "gpt-5.6-sol",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.3-codex-spark",
    "gpt-6-sol",
    "gpt-6-luna",
    "gpt-6-astra",
)

DEFAULT_CODEX_MODEL_TABLE: dict[str, Any] = {
    "default_slug": "gpt-5.5",
    "gizmo_slug": "gpt-5.5",
    "owned_by": "openai",
    "created": DEFAULT_CREATED,
    "models": [{"name": slug, "slug": slug} for slug in CODEX_SLUGS],
}
